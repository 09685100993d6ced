"""A three-node cluster in network namespaces: the leader of a partition is cut off the network while an
idempotent acks=all producer (confluent-kafka) runs; the others take over, the cut node comes back, and
every acknowledged record is read back once, at the offset it was acknowledged at, and every node reports
the same leaders. Twice: the cut node is the active controller (the KRaft quorum leader, found with
DescribeQuorum) leading a partition, then a partition leader that is not the active controller.

Each node runs in a namespace of its own behind a private bridge (tests/e2e/netns.py, nodes launched by
tests/e2e/netcluster.py); the client runs in a fourth. The same test runs against Apache Kafka 4.3.1 (E2E_BROKER=kafka: three combined KRaft
nodes). Needs root for `ip netns`: skipped, with the reason, where the machine does not allow it.
Both kinds get broker.session.timeout.ms 2000 and broker.heartbeat.interval.ms 500 (as the other
cluster tests), so the cut broker is fenced about two seconds after its last heartbeat.
"""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import netcluster
import netns
from conftest import BROKER_KIND, FJORD_BIN, KAFKA_LIBS, REPO
from netcluster import CLIENT_PORT, HOSTS, WAIT_S, NetCluster, active_controller, wait_for

PARTITIONS = 3
RECORDS_PER_S = 400


def leaders(bootstrap, topic):
    return netcluster.leaders(bootstrap, topic, PARTITIONS)


class Load(threading.Thread):
    """An idempotent acks=all producer: value i to partition i % PARTITIONS, at `records_per_s`; `conf` adds
    client settings (security)."""

    def __init__(self, bootstrap, topic, conf=None, records_per_s=RECORDS_PER_S):
        super().__init__(daemon=True)
        self.topic = topic
        self.records_per_s = records_per_s
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                                  "linger.ms": 5, "message.timeout.ms": 120_000, "log_level": 0, **(conf or {})})
        self.acked = []  # (partition, offset, value, monotonic time)
        self.errors = []
        self.sent = 0
        self.stop = threading.Event()

    def cb(self, err, msg):
        if err is not None:
            self.errors.append(str(err))
        else:
            self.acked.append((msg.partition(), msg.offset(), msg.value().decode(), time.monotonic()))

    def run(self):
        t0 = time.monotonic()
        while not self.stop.is_set():
            due = int((time.monotonic() - t0) * self.records_per_s)
            while self.sent < due:
                self.producer.produce(self.topic, str(self.sent).encode(), partition=self.sent % PARTITIONS,
                                      on_delivery=self.cb)
                self.sent += 1
            self.producer.poll(0.01)
        self.producer.flush(120)


RETRIABLE_QUERY_ERRORS = (KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                          KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._TIMED_OUT)


def watermark_end(consumer, topic, partition, timeout_s=60):
    """The high watermark of a partition. librdkafka's query does not retry a retriable answer (a broker that
    its metadata names as leader but that has not taken the leadership yet answers NOT_LEADER_OR_FOLLOWER, on
    Kafka too): retried here as an application would."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)[1]
        except KafkaException as e:
            if e.args[0].code() not in RETRIABLE_QUERY_ERRORS or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def read_all(bootstrap, topic, conf=None):
    """Every record of `topic` from the start, as (partition, offset, value), and the log end offsets."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"netns-check-{time.time_ns()}",
                  "enable.auto.commit": False, "log_level": 0, **(conf or {})})
    ends = {p: watermark_end(c, topic, p) for p in range(PARTITIONS)}
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    got = []
    done = {p for p, end in ends.items() if end == 0}
    deadline = time.monotonic() + WAIT_S
    while len(done) < PARTITIONS and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        got.append((m.partition(), m.offset(), m.value().decode()))
        if m.offset() + 1 >= ends[m.partition()]:
            done.add(m.partition())
    c.close()
    return got, ends


def wait_moved_off(cluster, bootstrap, topic, node_id, since, what):
    """Waits until `bootstrap`'s Metadata names a leader other than `node_id` for every partition of `topic`;
    returns those leaders and the seconds since `since` (a `time.monotonic()` reading)."""

    def moved():
        now = leaders(bootstrap, topic)
        return now if now and node_id not in now.values() else None

    after = wait_for(what, moved, cluster)
    return after, time.monotonic() - since


def check_acked_read_back(load, got):
    """Every record `load` sent was acknowledged without error, and each acknowledged record is in `got` (as
    `read_all` returns it) at the offset it was acknowledged at; no (partition, offset) is read twice.
    Returns `got` by (partition, offset)."""
    assert not load.is_alive(), "the producer did not finish"
    assert load.errors == [], f"delivery errors: {load.errors[:5]}"
    assert len(load.acked) == load.sent, f"{load.sent} sent, {len(load.acked)} acknowledged"
    at = {(p, off): v for p, off, v in got}
    assert len(at) == len(got), "a (partition, offset) read twice"
    missing = [(p, off, v) for p, off, v, _ in load.acked if at.get((p, off)) != v]
    assert missing == [], f"{len(missing)} acknowledged records not at their offsets, e.g. {missing[:5]}"
    return at


@pytest.mark.skipif(netns.available() is not None, reason=f"network namespaces: {netns.available()}")
@pytest.mark.parametrize("victim_kind", ["controller", "leader"])
def test_cut_off_leader_loses_no_acknowledged_write(tmp_path, victim_kind):
    topic = "netns-cut"
    with netns.Topology(HOSTS + ["client"]) as net:
        cluster = NetCluster(BROKER_KIND, net, tmp_path, fjord_bin=FJORD_BIN, kafka_libs=KAFKA_LIBS, repo=REPO)
        try:
            for h in HOSTS:
                cluster.start(h)
            bootstrap = ",".join(f"{net.addr(h)}:{CLIENT_PORT}" for h in HOSTS)
            with net.inside("client"):
                admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})

                def three_brokers():
                    try:
                        probe = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
                        return len(probe.list_topics(timeout=5).brokers) == 3
                    except Exception:  # noqa: BLE001 - not up yet
                        return False

                wait_for("three registered brokers", three_brokers, cluster, timeout_s=120)
                fs = admin.create_topics([NewTopic(topic, PARTITIONS, 3, config={"min.insync.replicas": "2"})])
                fs[topic].result(timeout=60)
                before = wait_for("leaders for every partition", lambda: leaders(bootstrap, topic), cluster)

                load = Load(bootstrap, topic)
                load.start()
                wait_for("acknowledgements", lambda: len(load.acked) > RECORDS_PER_S, cluster)
                # "controller": the active controller, which also leads a partition (leaders are striped over
                # the three brokers). Cutting it once left its partitions offline on Fjord: its deposed
                # controller kept deciding (fencing the brokers it no longer heard, shrinking ISRs to itself)
                # and those records reached the new quorum leader. "leader": a partition leader that is not it.
                why = {}
                try:
                    controller = wait_for("the active controller", lambda: active_controller(net, why), cluster)
                except AssertionError as e:
                    raise AssertionError(f"{e}\nDescribeQuorum answers: {why}") from None
                led = sorted(set(before.values()))
                if victim_kind == "controller":
                    assert controller in led, f"the active controller {controller} leads none of {before}"
                    victim_id = controller
                else:
                    victim_id = next(lead for lead in led if lead != controller)
                victim = HOSTS[victim_id - 1]
                net.cut(victim)
                t_cut = time.monotonic()

                survivors = ",".join(f"{net.addr(h)}:{CLIENT_PORT}" for h in HOSTS if h != victim)
                after, moved_s = wait_moved_off(cluster, survivors, topic, victim_id, t_cut,
                                                f"partitions led by node {victim_id} to move")
                n_at_move = len(load.acked)
                wait_for("acknowledgements from the new leaders", lambda: len(load.acked) > n_at_move + RECORDS_PER_S,
                         cluster)
                net.heal(victim)
                wait_for("the cut node back in the cluster", three_brokers, cluster)
                n_at_heal = len(load.acked)
                wait_for("acknowledgements after the heal", lambda: len(load.acked) > n_at_heal + RECORDS_PER_S,
                         cluster)
                load.stop.set()
                load.join(150)
                got, ends = read_all(bootstrap, topic)

                def agreed():
                    views = [leaders(f"{net.addr(h)}:{CLIENT_PORT}", topic) for h in HOSTS]
                    return views[0] if views[0] and all(v == views[0] for v in views) else None

                final = wait_for("every node to report the same leaders", agreed, cluster)
        finally:
            cluster.stop()

    check_acked_read_back(load, got)
    values = [v for _, _, v in got]
    assert len(set(values)) == len(values), "a record is stored twice"
    times = sorted(t for *_, t in load.acked)
    gap = max(b - a for a, b in zip(times, times[1:]))
    role = "the active controller, a partition leader" if victim_kind == "controller" else "a partition leader, not the controller"
    print(f"\n{BROKER_KIND}: cut node {victim_id} ({role}); its partitions moved after "
          f"{moved_s:.2f} s ({before} -> {after}); {len(load.acked)} records acknowledged, all read back "
          f"at their offsets; longest stretch without an acknowledgement {gap:.2f} s; log ends {ends}; "
          f"every node reports leaders {final}")
