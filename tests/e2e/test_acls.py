"""ACLs with real clients (issue 18): a broker with Kafka's StandardAuthorizer
(`authorizer.class.name`, `super.users`, `allow.everyone.if.no.acl.found` left false), a PLAINTEXT listener whose
anonymous principal is a super user (the admin side; Kafka's own CONTROLLER listener needs it too), and a
SASL_PLAINTEXT listener where alice and bob log in with PLAIN. ACLs are managed with Kafka's `kafka-acls` tool
(org.apache.kafka.tools.AclCommand) and librdkafka's admin client; librdkafka and kafka-python clients get
TOPIC_AUTHORIZATION_FAILED / GROUP_AUTHORIZATION_FAILED without an ACL and are served with one; a prefixed ACL covers
only the names it prefixes; Metadata leaks no name of a topic the client may not describe. Runs against Fjord and,
with E2E_BROKER=kafka, against Apache Kafka 4.3.1 with the same settings."""

from __future__ import annotations

import os
import time
import uuid

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, AdminClient,
                                   ResourcePatternType, ResourceType)

import clients as c
from conftest import BROKER_KIND, free_port

ACLS = "org.apache.kafka.tools.AclCommand"
ALICE_PW = "alice-" + uuid.uuid4().hex[:12]
BOB_PW = "bob-" + uuid.uuid4().hex[:12]


@pytest.fixture(scope="module")
def guarded():
    """One broker with the StandardAuthorizer: PLAINTEXT (super user) and SASL_PLAINTEXT (PLAIN) listeners."""
    from conftest import Broker, _tmp_root  # noqa: PLC0415 - the module-scoped broker is made by hand

    root = _tmp_root("acls")
    b = Broker(BROKER_KIND, root)
    sasl_port = free_port()
    listeners = f"PLAINTEXT://127.0.0.1:{b.port},SASL_PLAINTEXT://127.0.0.1:{sasl_port}"
    protocol_map = "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT"
    env_cport = None
    if BROKER_KIND == "kafka":
        env_cport = str(free_port())
        os.environ["CONTROLLER_PORT"] = env_cport
        listeners += f",CONTROLLER://127.0.0.1:{env_cport}"
        protocol_map += ",CONTROLLER:PLAINTEXT"
    b.settings = {
        "listeners": listeners,
        "advertised.listeners": listeners.replace(f",CONTROLLER://127.0.0.1:{env_cport}", ""),
        "listener.security.protocol.map": protocol_map,
        "sasl.enabled.mechanisms": "PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config":
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'user_alice="{ALICE_PW}" user_bob="{BOB_PW}";',
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": "User:ANONYMOUS",
    }
    try:
        b.start()
        yield b, f"127.0.0.1:{sasl_port}"
    finally:
        if env_cport is not None:
            os.environ.pop("CONTROLLER_PORT", None)
        b.kill9() if b.kind == "kafka" else b.stop(timeout_s=20)


def cf_conf(user):
    return {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN", "sasl.username": user,
            "sasl.password": ALICE_PW if user == "alice" else BOB_PW}


def kp_conf(user):
    return {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "sasl_plain_username": user,
            "sasl_plain_password": ALICE_PW if user == "alice" else BOB_PW}


def new_topic(b, prefix="acl"):
    topic = f"{prefix}-{uuid.uuid4().hex[:8]}"
    c.create_topic(b.bootstrap, topic)
    c.wait_topic(b.bootstrap, topic)
    return topic


def allow(b, resource_type, name, principal, operation, pattern=ResourcePatternType.LITERAL):
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    binding = AclBinding(resource_type, name, pattern, principal, "*", operation, AclPermissionType.ALLOW)
    for f in admin.create_acls([binding]).values():
        f.result(timeout=30)
    # Kafka's brokers apply the controller's ACL records a moment after CreateAcls answered.
    time.sleep(1.0 if b.kind == "kafka" else 0)


def produce_errors(bootstrap, topic, conf, n=3) -> list:
    """The delivery errors of `n` records (None when delivered)."""
    out: list = []
    p = Producer({"bootstrap.servers": bootstrap, "message.timeout.ms": 10000, **conf})
    for i in range(n):
        p.produce(topic, f"v{i}".encode(), on_delivery=lambda err, msg: out.append(err))
    p.flush(20)
    return out


def test_kafka_acls_tool_adds_lists_and_removes(guarded, java):
    b, _ = guarded
    prefix = f"tool-{uuid.uuid4().hex[:6]}-"
    common = ["--bootstrap-server", b.bootstrap]
    java.run(ACLS, *common, "--add", "--allow-principal", "User:carol", "--operation", "Read",
             "--operation", "Write", "--topic", prefix, "--resource-pattern-type", "prefixed")
    java.run(ACLS, *common, "--add", "--deny-principal", "User:carol", "--operation", "Read",
             "--group", f"{prefix}group")
    if b.kind == "kafka":
        time.sleep(1.0)
    listed = java.run(ACLS, *common, "--list", "--topic", prefix, "--resource-pattern-type", "prefixed").stdout
    assert f"name={prefix}, patternType=PREFIXED" in listed, listed
    assert "principal=User:carol, host=*, operation=READ, permissionType=ALLOW" in listed, listed
    assert "principal=User:carol, host=*, operation=WRITE, permissionType=ALLOW" in listed, listed
    everything = java.run(ACLS, *common, "--list").stdout
    assert "operation=READ, permissionType=DENY" in everything, everything
    java.run(ACLS, *common, "--remove", "--force", "--topic", prefix, "--resource-pattern-type", "prefixed")
    java.run(ACLS, *common, "--remove", "--force", "--group", f"{prefix}group")
    if b.kind == "kafka":
        time.sleep(1.0)
    after = java.run(ACLS, *common, "--list", "--principal", "User:carol").stdout
    assert "principal=User:carol" not in after, after


def test_librdkafka_needs_topic_and_group_acls(guarded):
    b, sasl = guarded
    topic = new_topic(b)
    errs = produce_errors(sasl, topic, cf_conf("alice"))
    assert errs and all(e is not None and e.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED for e in errs), errs
    allow(b, ResourceType.TOPIC, topic, "User:alice", AclOperation.WRITE)
    assert produce_errors(sasl, topic, cf_conf("alice")) == [None, None, None]

    # READ on the topic, nothing on the group: the group refuses.
    allow(b, ResourceType.TOPIC, topic, "User:alice", AclOperation.READ)
    group = f"g-{uuid.uuid4().hex[:8]}"
    consumer = c.cf_consumer(sasl, {**cf_conf("alice"), "group.id": group})
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 30
        seen = None
        while seen is None and time.monotonic() < deadline:
            for m in consumer.consume(num_messages=10, timeout=0.5):
                if m.error() is not None:
                    seen = m.error()
        assert seen is not None and seen.code() == KafkaError.GROUP_AUTHORIZATION_FAILED, seen
    finally:
        consumer.close()
    allow(b, ResourceType.GROUP, group, "User:alice", AclOperation.READ)
    consumer = c.cf_consumer(sasl, {**cf_conf("alice"), "group.id": group})
    try:
        consumer.subscribe([topic])
        got = c.cf_poll(consumer, 3, timeout_s=40)
        assert sorted(r["value"] for r in got) == ["v0", "v1", "v2"], got
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()


def test_prefixed_acl_covers_only_its_prefix(guarded):
    b, sasl = guarded
    base = f"pfx{uuid.uuid4().hex[:6]}"
    inside, outside = f"{base}-in", f"{base}in"
    for t in (inside, outside):
        c.create_topic(b.bootstrap, t)
        c.wait_topic(b.bootstrap, t)
    allow(b, ResourceType.TOPIC, f"{base}-", "User:bob", AclOperation.WRITE, ResourcePatternType.PREFIXED)
    assert produce_errors(sasl, inside, cf_conf("bob"), n=1) == [None]
    errs = produce_errors(sasl, outside, cf_conf("bob"), n=1)
    assert errs[0] is not None and errs[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, errs
    # alice has no ACL on either.
    errs = produce_errors(sasl, inside, cf_conf("alice"), n=1)
    assert errs[0] is not None and errs[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, errs


def test_metadata_leaks_no_unauthorized_topic_name(guarded):
    b, sasl = guarded
    secret, shown = new_topic(b, "secret"), new_topic(b, "shown")
    allow(b, ResourceType.TOPIC, shown, "User:bob", AclOperation.DESCRIBE)
    admin = AdminClient({"bootstrap.servers": sasl, **cf_conf("bob")})
    names = set(admin.list_topics(timeout=20).topics)
    assert shown in names and secret not in names, names
    # Named explicitly: refused, whether it exists or not.
    md = admin.list_topics(topic=secret, timeout=20)
    assert md.topics[secret].error is not None
    assert md.topics[secret].error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # kafka-python's view likewise.
    from kafka import KafkaConsumer  # noqa: PLC0415

    kc = KafkaConsumer(bootstrap_servers=sasl, **kp_conf("bob"))
    try:
        kp_names = kc.topics()
    finally:
        kc.close()
    assert shown in kp_names and secret not in kp_names, kp_names
    # The super user sees both.
    everything = set(AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=20).topics)
    assert {secret, shown} <= everything


def test_kafka_python_gets_authorization_errors(guarded):
    from kafka import KafkaConsumer, KafkaProducer  # noqa: PLC0415
    from kafka import TopicPartition as KpPartition  # noqa: PLC0415
    from kafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError  # noqa: PLC0415

    b, sasl = guarded
    topic = new_topic(b, "kp")
    producer = KafkaProducer(bootstrap_servers=sasl, max_block_ms=10000, **kp_conf("bob"))
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            producer.send(topic, b"x").get(timeout=20)
    finally:
        producer.close()
    allow(b, ResourceType.TOPIC, topic, "User:bob", AclOperation.ALL)
    producer = KafkaProducer(bootstrap_servers=sasl, max_block_ms=10000, **kp_conf("bob"))
    try:
        producer.send(topic, b"x").get(timeout=20)
    finally:
        producer.close()
    group = f"kpg-{uuid.uuid4().hex[:8]}"
    consumer = KafkaConsumer(bootstrap_servers=sasl, group_id=group, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=20000, **kp_conf("bob"))
    try:
        consumer.assign([KpPartition(topic, 0)])
        with pytest.raises(GroupAuthorizationFailedError):
            consumer.committed(KpPartition(topic, 0))
    finally:
        consumer.close()


def _admin_error(future):
    """The Kafka error code a librdkafka admin future failed with (None: it succeeded)."""
    from confluent_kafka import KafkaException  # noqa: PLC0415

    try:
        future.result(timeout=30)
        return None
    except KafkaException as e:
        return e.args[0].code()


def test_configs_and_group_admin_need_their_acls(guarded):
    """Admin APIs for a non-super user get Kafka's authorization error per resource (they used to close the
    connection): DescribeConfigs needs DESCRIBE_CONFIGS on the topic, IncrementalAlterConfigs ALTER_CONFIGS on the
    topic or the cluster, DescribeGroups DESCRIBE and DeleteGroups DELETE on the group; ListGroups lists only
    the groups the user may describe."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource  # noqa: PLC0415
    from confluent_kafka.admin import ResourceType as CR  # noqa: PLC0415

    b, sasl = guarded
    topic = new_topic(b)
    # A group with committed offsets, made by the super user.
    group, hidden = f"g-{uuid.uuid4().hex[:8]}", f"h-{uuid.uuid4().hex[:8]}"
    for g in (group, hidden):
        consumer = c.cf_consumer(b.bootstrap, {"group.id": g})
        try:
            consumer.assign([c.TopicPartition(topic, 0, 0)])
            consumer.commit(offsets=[c.TopicPartition(topic, 0, 0)], asynchronous=False)
        finally:
            consumer.close()
    alice = AdminClient({"bootstrap.servers": sasl, **cf_conf("alice")})
    res = ConfigResource(CR.TOPIC, topic)
    assert _admin_error(alice.describe_configs([res])[res]) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    allow(b, ResourceType.TOPIC, topic, "User:alice", AclOperation.DESCRIBE_CONFIGS)
    assert _admin_error(alice.describe_configs([res])[res]) is None
    change = ConfigResource(CR.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET)])
    assert _admin_error(alice.incremental_alter_configs([change])[change]) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    broker_change = ConfigResource(CR.BROKER, "1", incremental_configs=[
        ConfigEntry("log.cleaner.threads", "1", incremental_operation=AlterConfigOpType.SET)])
    assert (_admin_error(alice.incremental_alter_configs([broker_change])[broker_change])
            == KafkaError.CLUSTER_AUTHORIZATION_FAILED)
    allow(b, ResourceType.TOPIC, topic, "User:alice", AclOperation.ALTER_CONFIGS)
    assert _admin_error(alice.incremental_alter_configs([change])[change]) is None

    assert _admin_error(alice.describe_consumer_groups([group])[group]) == KafkaError.GROUP_AUTHORIZATION_FAILED
    assert _admin_error(alice.delete_consumer_groups([group])[group]) == KafkaError.GROUP_AUTHORIZATION_FAILED
    listed = alice.list_consumer_groups().result(timeout=30)
    names = {g.group_id for g in listed.valid}
    assert group not in names and hidden not in names, names
    allow(b, ResourceType.GROUP, group, "User:alice", AclOperation.DESCRIBE)
    assert _admin_error(alice.describe_consumer_groups([group])[group]) is None
    names = {g.group_id for g in alice.list_consumer_groups().result(timeout=30).valid}
    assert group in names and hidden not in names, names
    allow(b, ResourceType.GROUP, group, "User:alice", AclOperation.DELETE)
    assert _admin_error(alice.delete_consumer_groups([group])[group]) is None


AUTHZ_ERRORS = {"ClusterAuthorizationException", "TopicAuthorizationException", "GroupAuthorizationException",
                "TransactionalIdAuthorizationException"}
CLUSTER_APIS = ["DescribeLogDirs", "AlterReplicaLogDirs", "ElectLeaders", "AlterPartitionReassignments",
                "ListPartitionReassignments", "DescribeQuorum", "UpdateFeatures", "DescribeUserScramCredentials",
                "AlterUserScramCredentials"]
TABLE_APIS = ["CreatePartitions", "DeleteRecords", "DescribeProducers", "DescribeTopicPartitions",
              "DescribeTransactions", "ListTransactions", "OffsetDelete", *CLUSTER_APIS, "DescribeCluster", "Txn"]


def allow_all(b, bindings, user="alice"):
    """Creates (resource type, name, pattern, operation) ALLOW ACLs for `user` in one CreateAcls."""
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    acls = [AclBinding(rt, name, pattern, f"User:{user}", "*", op, AclPermissionType.ALLOW)
            for rt, name, pattern, op in bindings]
    for f in admin.create_acls(acls).values():
        f.result(timeout=30)
    time.sleep(1.0 if b.kind == "kafka" else 0)


def acl_table(java, sasl, topic, secret, group, txn, apis, user="alice") -> dict:
    """AclTable.java's answers as `user`: {api: (error class or None, message, listed)}."""
    import json  # noqa: PLC0415

    password = ALICE_PW if user == "alice" else BOB_PW
    res = java.run("AclTable", sasl, user, password, topic, secret, group, txn, ",".join(apis), timeout=150)
    rows = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    out = {r["api"]: (r["error"], r.get("message"), r.get("listed")) for r in rows}
    assert list(out) == apis, res.stdout + res.stderr[-2000:]
    return out


def test_authorization_table_with_java_admin_and_librdkafka(guarded, java):
    """Every API of Kafka's authorization table, called by the Java admin client and producer (AclTable.java)
    and some by librdkafka, as alice: first with DESCRIBE on the topic and the group only (each API answers its
    authorization error: CLUSTER_AUTHORIZATION_FAILED for the cluster APIs, TOPIC_/GROUP_/TRANSACTIONAL_ID_
    AUTHORIZATION_FAILED per resource; ListTransactions leaves out the id she may not describe), then with the
    group's and the transactional id's ACLs but no READ on the topic (OffsetDelete and TxnOffsetCommit refuse the
    topic; a transaction writing to a topic she may describe but not write is refused), then with everything:
    no authorization error. These APIs used to close the connection of a non-super user."""
    from confluent_kafka import ElectionType  # noqa: PLC0415
    from confluent_kafka.admin import (NewPartitions, ScramCredentialInfo, ScramMechanism,  # noqa: PLC0415
                                       UserScramCredentialUpsertion)

    b, sasl = guarded
    topic, secret = new_topic(b, "tbl"), new_topic(b, "tbls")
    group, txn = f"tg-{uuid.uuid4().hex[:8]}", f"tx-{uuid.uuid4().hex[:8]}"
    # The super user commits an offset for the group and finishes a transaction with the id.
    consumer = c.cf_consumer(b.bootstrap, {"group.id": group})
    try:
        consumer.commit(offsets=[c.TopicPartition(topic, 0, 0)], asynchronous=False)
    finally:
        consumer.close()
    producer = Producer({"bootstrap.servers": b.bootstrap, "transactional.id": txn})
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, b"t0", partition=0)
    producer.commit_transaction(30)

    # 1. DESCRIBE on the topic and the group only.
    allow_all(b, [(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, AclOperation.DESCRIBE),
                  (ResourceType.GROUP, group, ResourcePatternType.LITERAL, AclOperation.DESCRIBE)])
    got = acl_table(java, sasl, topic, secret, group, txn, TABLE_APIS)
    expected = {
        "CreatePartitions": "TopicAuthorizationException", "DeleteRecords": "TopicAuthorizationException",
        "DescribeProducers": "TopicAuthorizationException", "DescribeTopicPartitions": "TopicAuthorizationException",
        "DescribeTransactions": "TransactionalIdAuthorizationException", "ListTransactions": None,
        "OffsetDelete": "GroupAuthorizationException", **{api: "ClusterAuthorizationException" for api in CLUSTER_APIS},
        "DescribeCluster": None, "Txn": "TransactionalIdAuthorizationException",
    }
    assert {api: e for api, (e, _, _) in got.items()} == expected, got
    assert txn not in got["ListTransactions"][2], got["ListTransactions"]
    # librdkafka's admin client gets the same answers. (Not DescribeUserScramCredentials: librdkafka 2.12-2.16
    # frees memory it does not own on any top-level error of that response and aborts, with Kafka as well.)
    alice = AdminClient({"bootstrap.servers": sasl, **cf_conf("alice")})
    scram = UserScramCredentialUpsertion("carol", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"pw")
    changed = alice.alter_user_scram_credentials([scram])
    assert [_admin_error(f) for f in changed.values()] == [KafkaError.CLUSTER_AUTHORIZATION_FAILED]
    elected = alice.elect_leaders(ElectionType.PREFERRED, [c.TopicPartition(topic, 0)])
    assert _admin_error(elected) == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    grow = alice.create_partitions([NewPartitions(topic, 2)])[topic]
    assert _admin_error(grow) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    deleted = alice.delete_records([c.TopicPartition(topic, 0, 0)])
    assert [_admin_error(f) for f in deleted.values()] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]

    # 2. The group's and the transactional id's ACLs, DESCRIBE on the secret topic, WRITE but no READ on the topic.
    allow_all(b, [(ResourceType.GROUP, group, ResourcePatternType.LITERAL, AclOperation.READ),
                  (ResourceType.GROUP, group, ResourcePatternType.LITERAL, AclOperation.DELETE),
                  (ResourceType.TRANSACTIONAL_ID, txn, ResourcePatternType.PREFIXED, AclOperation.WRITE),
                  (ResourceType.TRANSACTIONAL_ID, txn, ResourcePatternType.PREFIXED, AclOperation.DESCRIBE),
                  (ResourceType.TOPIC, secret, ResourcePatternType.LITERAL, AclOperation.DESCRIBE),
                  (ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, AclOperation.WRITE)])
    apis = ["OffsetDelete", "DescribeTransactions", "ListTransactions", "DescribeTopicPartitions", "Txn", "TxnSecret"]
    got = acl_table(java, sasl, topic, secret, group, txn, apis)
    assert got["OffsetDelete"][0] == "TopicAuthorizationException", got
    assert got["DescribeTransactions"][0] is None and got["DescribeTopicPartitions"][0] is None, got
    assert txn in got["ListTransactions"][2], got
    # TxnOffsetCommit's TOPIC_AUTHORIZATION_FAILED is fatal to the Java producer.
    assert got["Txn"][0] == "KafkaException" and "Topic authorization failed" in got["Txn"][1], got
    assert got["TxnSecret"][0] == "TopicAuthorizationException", got

    # 3. Everything: no authorization error anywhere.
    allow_all(b, [(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, AclOperation.ALL),
                  (ResourceType.BROKER, "kafka-cluster", ResourcePatternType.LITERAL, AclOperation.ALTER),
                  (ResourceType.BROKER, "kafka-cluster", ResourcePatternType.LITERAL, AclOperation.DESCRIBE)])
    got = acl_table(java, sasl, topic, secret, group, txn, TABLE_APIS)
    assert not [api for api, (e, _, _) in got.items() if e in AUTHZ_ERRORS], got
    for api in ["CreatePartitions", "DeleteRecords", "DescribeProducers", "DescribeTopicPartitions",
                "DescribeTransactions", "OffsetDelete", "DescribeLogDirs", "ListPartitionReassignments",
                "DescribeQuorum", "DescribeUserScramCredentials", "AlterUserScramCredentials", "DescribeCluster",
                "Txn"]:
        assert got[api][0] is None, (api, got[api])
    changed = alice.alter_user_scram_credentials([scram])
    assert [_admin_error(f) for f in changed.values()] == [None]
    elected = _admin_error(alice.elect_leaders(ElectionType.PREFERRED, [c.TopicPartition(topic, 0)]))
    assert elected != KafkaError.CLUSTER_AUTHORIZATION_FAILED, elected
    deleted = alice.delete_records([c.TopicPartition(topic, 0, 0)])
    assert [_admin_error(f) for f in deleted.values()] == [None]


def test_authorized_operations_with_java_admin_and_librdkafka(guarded, java):
    """Asked for them, DescribeCluster, DescribeTopicPartitions (the Java admin's describeTopics), Metadata
    (librdkafka's describe_topics) and DescribeGroups report the operations the principal may do, DESCRIBE
    implied by READ, as Kafka's authorizedOperations: bob (no cluster or group ACL before this test) with READ on a
    topic and DESCRIBE on a group and on the cluster gets exactly those; not asked, no operations; the super user gets every supported cluster operation."""
    from confluent_kafka import TopicCollection  # noqa: PLC0415

    b, sasl = guarded
    topic, group = new_topic(b, "ops"), f"og-{uuid.uuid4().hex[:8]}"
    consumer = c.cf_consumer(b.bootstrap, {"group.id": group})
    try:
        consumer.commit(offsets=[c.TopicPartition(topic, 0, 0)], asynchronous=False)
    finally:
        consumer.close()
    allow_all(b, [(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, AclOperation.READ),
                  (ResourceType.GROUP, group, ResourcePatternType.LITERAL, AclOperation.DESCRIBE),
                  (ResourceType.BROKER, "kafka-cluster", ResourcePatternType.LITERAL, AclOperation.DESCRIBE)],
              user="bob")
    got = acl_table(java, sasl, topic, topic, group, "unused", ["AuthorizedOps"], user="bob")
    assert got["AuthorizedOps"][0] is None, got
    assert got["AuthorizedOps"][2] == ["cluster:DESCRIBE", "group:DESCRIBE", "topic:DESCRIBE", "topic:READ"], got

    bob = AdminClient({"bootstrap.servers": sasl, **cf_conf("bob")})
    ops = lambda x: sorted(o.name for o in x.authorized_operations)  # noqa: E731
    cluster = bob.describe_cluster(include_authorized_operations=True, request_timeout=15).result(timeout=20)
    assert ops(cluster) == ["DESCRIBE"], cluster.authorized_operations
    described = bob.describe_topics(TopicCollection([topic]), include_authorized_operations=True,
                                      request_timeout=15)[topic].result(timeout=20)
    assert ops(described) == ["DESCRIBE", "READ"], described.authorized_operations
    grp = bob.describe_consumer_groups([group], include_authorized_operations=True,
                                         request_timeout=15)[group].result(timeout=20)
    assert ops(grp) == ["DESCRIBE"], grp.authorized_operations
    plain = bob.describe_topics(TopicCollection([topic]), request_timeout=15)[topic].result(timeout=20)
    assert plain.authorized_operations is None, plain.authorized_operations

    root = AdminClient({"bootstrap.servers": b.bootstrap})
    cluster = root.describe_cluster(include_authorized_operations=True, request_timeout=15).result(timeout=20)
    assert ops(cluster) == ["ALTER", "ALTER_CONFIGS", "CLUSTER_ACTION", "CREATE", "DESCRIBE", "DESCRIBE_CONFIGS",
                            "IDEMPOTENT_WRITE"], cluster.authorized_operations
