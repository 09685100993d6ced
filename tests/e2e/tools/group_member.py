"""One consumer-group member in its own process, so that a test can SIGKILL it.

    python group_member.py CLIENT BOOTSTRAP TOPIC GROUP [k=v ...]

CLIENT is `cf` (confluent-kafka, librdkafka) or `kp` (kafka-python). Settings are client config names
(librdkafka names for cf; KafkaConsumer keyword names for kp, values parsed as int when they look like one).

The member subscribes to TOPIC, commits the offsets of every batch right after processing it
(synchronously; offsets whose commit failed go with the next commit or are committed on revocation), and
prints JSON lines on stdout, each with "t" (wall-clock seconds, float):
    {"type":"assigned"|"revoked"|"lost","partitions":[p,...]}  from the rebalance callbacks
    {"type":"records","recs":[[partition, offset, value], ...]}
    {"type":"commit","offsets":{"p": next_offset}} or {"type":"commit_failed","error":...}
    {"type":"closed"}                                               after a clean close
A line "close" on stdin (or EOF) makes it close cleanly (leaving the group). The Java twin is
`E2EClient group` in tests/e2e/java/E2EClient.java.
"""

from __future__ import annotations

import json
import sys
import threading
import time

OUT_LOCK = threading.Lock()


def emit(kind: str, **kw) -> None:
    line = json.dumps({"type": kind, "t": time.time(), **kw})
    with OUT_LOCK:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def watch_stdin(stop: threading.Event) -> None:
    for line in sys.stdin:
        if line.strip() == "close":
            break
    stop.set()


def _dec(b):
    return None if b is None else b.decode(errors="replace")


def run_cf(bootstrap: str, topic: str, group: str, conf: dict[str, str], stop: threading.Event) -> None:
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            **conf,
        }
    )

    pending: dict[int, int] = {}  # processed, not yet committed (a commit failed)

    def commit(offsets: dict[int, int], keep: bool) -> None:
        try:
            res = c.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)
            bad = [str(tp.error) for tp in res or [] if tp.error]
            if bad:
                raise KafkaException(";".join(bad))
            emit("commit", offsets={str(p): o for p, o in offsets.items()})
            for p, o in offsets.items():
                if pending.get(p) == o:
                    del pending[p]
        except KafkaException as e:
            emit("commit_failed", error=str(e))
            if keep:
                pending.update(offsets)

    def on_assign(_c, parts):
        emit("assigned", partitions=sorted(p.partition for p in parts))

    def on_revoke(_c, parts):
        mine = {p.partition: pending.pop(p.partition) for p in parts if p.partition in pending}
        if mine:
            commit(mine, keep=False)
        emit("revoked", partitions=sorted(p.partition for p in parts))

    def on_lost(_c, parts):
        for p in parts:
            pending.pop(p.partition, None)
        emit("lost", partitions=sorted(p.partition for p in parts))

    c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
    while not stop.is_set():
        msgs = c.consume(num_messages=200, timeout=0.1)
        recs, nxt = [], {}
        for m in msgs:
            if m.error():
                if m.error().fatal():
                    emit("error", error=str(m.error()))
                continue
            recs.append([m.partition(), m.offset(), _dec(m.value())])
            nxt[m.partition()] = m.offset() + 1
        if not recs:
            continue
        emit("records", recs=recs)
        pending.update(nxt)
        commit(dict(pending), keep=True)
    c.close()
    emit("closed")


def run_kp(bootstrap: str, topic: str, group: str, conf: dict[str, str], stop: threading.Event) -> None:
    from kafka import ConsumerRebalanceListener, KafkaConsumer
    from kafka.structs import OffsetAndMetadata, TopicPartition

    kw = {k: int(v) if v.lstrip("-").isdigit() else v for k, v in conf.items()}
    c = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **kw,
    )

    pending: dict[int, int] = {}  # processed, not yet committed (a commit failed)

    def commit(offsets: dict[int, int], keep: bool) -> None:
        try:
            c.commit({TopicPartition(topic, p): OffsetAndMetadata(o, "", -1) for p, o in offsets.items()})
            emit("commit", offsets={str(p): o for p, o in offsets.items()})
            for p, o in offsets.items():
                if pending.get(p) == o:
                    del pending[p]
        except Exception as e:  # noqa: BLE001 - reported to the test, which decides
            emit("commit_failed", error=f"{type(e).__name__}: {e}")
            if keep:
                pending.update(offsets)

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            mine = {tp.partition: pending.pop(tp.partition) for tp in revoked if tp.partition in pending}
            if mine:
                commit(mine, keep=False)
            emit("revoked", partitions=sorted(tp.partition for tp in revoked))

        def on_partitions_assigned(self, assigned):
            emit("assigned", partitions=sorted(tp.partition for tp in assigned))

        def on_partitions_lost(self, lost):
            for tp in lost:
                pending.pop(tp.partition, None)
            emit("lost", partitions=sorted(tp.partition for tp in lost))

    c.subscribe([topic], listener=Listener())
    while not stop.is_set():
        batches = c.poll(timeout_ms=100, max_records=200)
        recs, nxt = [], {}
        for _tp, msgs in batches.items():
            for m in msgs:
                recs.append([m.partition, m.offset, _dec(m.value)])
                nxt[m.partition] = m.offset + 1
        if not recs:
            continue
        emit("records", recs=recs)
        pending.update(nxt)
        commit(dict(pending), keep=True)
    c.close()
    emit("closed")


def main() -> None:
    client, bootstrap, topic, group, *kvs = sys.argv[1:]
    conf = dict(kv.split("=", 1) for kv in kvs)
    stop = threading.Event()
    threading.Thread(target=watch_stdin, args=(stop,), daemon=True).start()
    {"cf": run_cf, "kp": run_kp}[client](bootstrap, topic, group, conf, stop)


if __name__ == "__main__":
    main()
