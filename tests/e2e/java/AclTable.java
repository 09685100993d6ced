// The Java client's side of test_acls.py's authorization table (issue 18): one Admin (and, for the
// transactional calls, producers) logged in as a SASL/PLAIN user calls each API of the table once and
// prints one JSON line per call:
//   {"api": NAME, "error": "ExceptionSimpleClass" | null, "message": ..., "listed": [...]?}
// ("listed": the transactional ids ListTransactions answered).
//
//   AclTable BOOTSTRAP USER PASSWORD TOPIC SECRET_TOPIC GROUP TXN_ID API[,API...]
//
// APIs: CreatePartitions DeleteRecords DescribeProducers DescribeTopicPartitions DescribeTransactions
// ListTransactions OffsetDelete DescribeLogDirs AlterReplicaLogDirs ElectLeaders AlterPartitionReassignments
// ListPartitionReassignments DescribeQuorum UpdateFeatures DescribeUserScramCredentials
// AlterUserScramCredentials DescribeCluster, AuthorizedOps (listed: the operations DescribeCluster,
// DescribeTopicPartitions on TOPIC and DescribeGroups on GROUP report when asked, "cluster:DESCRIBE"...), and two transactional producers: Txn (InitProducerId, a record to
// TOPIC, its offset 0 for GROUP with sendOffsetsToTransaction, commit) and TxnSecret (a record to SECRET_TOPIC).
// Each call uses partition 0 of TOPIC; SECRET_TOPIC is the topic DescribeTopicPartitions asks about.

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.DescribeClusterOptions;
import org.apache.kafka.clients.admin.DescribeConsumerGroupsOptions;
import org.apache.kafka.clients.admin.DescribeTopicsOptions;
import org.apache.kafka.clients.admin.FeatureUpdate;
import org.apache.kafka.clients.admin.NewPartitionReassignment;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.admin.TransactionListing;
import org.apache.kafka.clients.admin.UpdateFeaturesOptions;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.clients.consumer.ConsumerGroupMetadata;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.ElectionType;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionReplica;
import org.apache.kafka.common.serialization.StringSerializer;

public class AclTable {
    static final ObjectMapper JSON = new ObjectMapper();

    interface Call {
        Object run() throws Exception;
    }

    static Properties login(String bootstrap, String user, String password) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("security.protocol", "SASL_PLAINTEXT");
        p.put("sasl.mechanism", "PLAIN");
        p.put("sasl.jaas.config", "org.apache.kafka.common.security.plain.PlainLoginModule required username=\""
                + user + "\" password=\"" + password + "\";");
        p.put("request.timeout.ms", "10000");
        p.put("default.api.timeout.ms", "15000");
        return p;
    }

    static void report(String api, Call call) {
        ObjectNode n = JSON.createObjectNode();
        n.put("api", api);
        try {
            Object r = call.run();
            n.putNull("error");
            if (r instanceof Collection<?> c) {
                var listed = n.putArray("listed");
                for (Object o : c) listed.add(String.valueOf(o));
            }
        } catch (Throwable t) {
            Throwable e = t;
            while ((e instanceof ExecutionException || e.getClass() == RuntimeException.class) && e.getCause() != null)
                e = e.getCause();
            n.put("error", e.getClass().getSimpleName());
            n.put("message", String.valueOf(e.getMessage()));
        }
        System.out.println(n.toString());
        System.out.flush();
    }

    static <T> T get(org.apache.kafka.common.KafkaFuture<T> f) throws Exception {
        return f.get(20, TimeUnit.SECONDS);
    }

    static Object transaction(Properties base, String txnId, String topic, String group) throws Exception {
        Properties p = new Properties();
        p.putAll(base);
        p.put("transactional.id", txnId);
        p.put("max.block.ms", "15000");
        p.put("delivery.timeout.ms", "15000");
        p.put("key.serializer", StringSerializer.class.getName());
        p.put("value.serializer", StringSerializer.class.getName());
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            producer.initTransactions();
            producer.beginTransaction();
            producer.send(new ProducerRecord<>(topic, 0, "k", "v")).get(20, TimeUnit.SECONDS);
            if (group != null) {
                producer.sendOffsetsToTransaction(Map.of(new TopicPartition(topic, 0), new OffsetAndMetadata(0)),
                        new ConsumerGroupMetadata(group));
            }
            producer.commitTransaction();
        }
        return null;
    }

    /** The operations the cluster, TOPIC and GROUP report for this user when asked to (DescribeCluster,
     * DescribeTopicPartitions and DescribeGroups with include-authorized-operations), as "cluster:DESCRIBE",
     * "topic:READ", ..., sorted. */
    static List<String> authorizedOperations(Admin admin, String topic, String group) throws Exception {
        List<String> ops = new ArrayList<>();
        Set<AclOperation> cluster = get(admin.describeCluster(
                new DescribeClusterOptions().includeAuthorizedOperations(true)).authorizedOperations());
        if (cluster != null) for (AclOperation o : cluster) ops.add("cluster:" + o);
        TopicDescription t = get(admin.describeTopics(List.of(topic),
                new DescribeTopicsOptions().includeAuthorizedOperations(true)).allTopicNames()).get(topic);
        if (t.authorizedOperations() != null) for (AclOperation o : t.authorizedOperations()) ops.add("topic:" + o);
        ConsumerGroupDescription g = get(admin.describeConsumerGroups(List.of(group),
                new DescribeConsumerGroupsOptions().includeAuthorizedOperations(true)).all()).get(group);
        if (g.authorizedOperations() != null) for (AclOperation o : g.authorizedOperations()) ops.add("group:" + o);
        java.util.Collections.sort(ops);
        return ops;
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], user = args[1], password = args[2], topic = args[3], secret = args[4],
                group = args[5], txnId = args[6];
        List<String> apis = List.of(args[7].split(","));
        Properties base = login(bootstrap, user, password);
        TopicPartition tp = new TopicPartition(topic, 0);
        try (Admin admin = Admin.create(base)) {
            int node = get(admin.describeCluster().controller()).id();
            for (String api : apis) {
                switch (api) {
                    case "CreatePartitions" -> report(api, () -> get(
                            admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(2))).all()));
                    case "DeleteRecords" -> report(api, () -> get(
                            admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(0))).all()));
                    case "DescribeProducers" -> report(api, () -> get(admin.describeProducers(List.of(tp)).all()));
                    case "DescribeTopicPartitions" -> report(api, () -> get(
                            admin.describeTopics(List.of(secret)).allTopicNames()));
                    case "DescribeTransactions" -> report(api, () -> get(
                            admin.describeTransactions(List.of(txnId)).all()));
                    case "ListTransactions" -> report(api, () -> {
                        List<String> ids = new ArrayList<>();
                        for (TransactionListing l : get(admin.listTransactions().all())) ids.add(l.transactionalId());
                        return ids;
                    });
                    case "OffsetDelete" -> report(api, () -> get(
                            admin.deleteConsumerGroupOffsets(group, Set.of(tp)).all()));
                    case "DescribeLogDirs" -> report(api, () -> get(
                            admin.describeLogDirs(List.of(node)).allDescriptions()));
                    case "AlterReplicaLogDirs" -> report(api, () -> get(admin.alterReplicaLogDirs(
                            Map.of(new TopicPartitionReplica(topic, 0, node), "/nonexistent-fjord-dir")).all()));
                    case "ElectLeaders" -> report(api, () -> get(
                            admin.electLeaders(ElectionType.PREFERRED, Set.of(tp)).all()));
                    case "AlterPartitionReassignments" -> report(api, () -> get(admin.alterPartitionReassignments(
                            Map.of(tp, Optional.of(new NewPartitionReassignment(List.of(node))))).all()));
                    case "ListPartitionReassignments" -> report(api, () -> get(
                            admin.listPartitionReassignments().reassignments()));
                    case "DescribeQuorum" -> report(api, () -> get(admin.describeMetadataQuorum().quorumInfo()));
                    case "UpdateFeatures" -> report(api, () -> get(admin.updateFeatures(
                            Map.of("fjord.no.such.feature", new FeatureUpdate((short) 1,
                                    FeatureUpdate.UpgradeType.UPGRADE)),
                            new UpdateFeaturesOptions().validateOnly(true)).all()));
                    case "DescribeUserScramCredentials" -> report(api, () -> get(
                            admin.describeUserScramCredentials().all()));
                    case "AlterUserScramCredentials" -> report(api, () -> get(admin.alterUserScramCredentials(
                            List.of(new UserScramCredentialUpsertion("carol",
                                    new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), "carol-pw"))).all()));
                    case "DescribeCluster" -> report(api, () -> get(admin.describeCluster().clusterId()));
                    case "AuthorizedOps" -> report(api, () -> authorizedOperations(admin, topic, group));
                    case "Txn" -> report(api, () -> transaction(base, txnId, topic, group));
                    case "TxnSecret" -> report(api, () -> transaction(base, txnId + "-secret", secret, null));
                    default -> throw new IllegalArgumentException("unknown API " + api);
                }
            }
        }
    }
}
