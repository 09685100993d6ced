// Prints Apache Kafka's own encodings of a few KRaft records, one per line:
// `<case> <hex>`. Framed metadata records go through Kafka's
// MetadataRecordSerde (frame version, api key, version, body); control
// records are bodies only. Compiled and run against the Kafka 4.3.1 jars by
// crates/protocol/tests/metadata_records.rs (FJORD_KAFKA_LIBS=<dir of jars>);
// its output is committed as kafka_record_bytes.txt.

import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.List;

import org.apache.kafka.common.Uuid;
import org.apache.kafka.common.message.VotersRecord;
import org.apache.kafka.common.metadata.ConfigRecord;
import org.apache.kafka.common.metadata.FeatureLevelRecord;
import org.apache.kafka.common.metadata.PartitionChangeRecord;
import org.apache.kafka.common.metadata.PartitionRecord;
import org.apache.kafka.common.metadata.ProducerIdsRecord;
import org.apache.kafka.common.metadata.RegisterBrokerRecord;
import org.apache.kafka.common.metadata.RemoveTopicRecord;
import org.apache.kafka.common.metadata.TopicRecord;
import org.apache.kafka.common.protocol.ApiMessage;
import org.apache.kafka.common.protocol.ByteBufferAccessor;
import org.apache.kafka.common.protocol.Message;
import org.apache.kafka.common.protocol.ObjectSerializationCache;
import org.apache.kafka.metadata.MetadataRecordSerde;
import org.apache.kafka.server.common.ApiMessageAndVersion;

public class KafkaRecordBytes {
    static final Uuid TOPIC = new Uuid(0x0102030405060708L, 0x090a0b0c0d0e0f10L);
    static final Uuid DIR_A = new Uuid(0x1111111111111111L, 0x2222222222222222L);
    static final Uuid DIR_B = new Uuid(0x3333333333333333L, 0x4444444444444444L);

    static String hex(ByteBuffer buf) {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < buf.limit(); i++) {
            sb.append(String.format("%02x", buf.get(i)));
        }
        return sb.toString();
    }

    static void framed(String name, ApiMessage message, int version) {
        MetadataRecordSerde serde = MetadataRecordSerde.INSTANCE;
        ApiMessageAndVersion amv = new ApiMessageAndVersion(message, (short) version);
        ObjectSerializationCache cache = new ObjectSerializationCache();
        ByteBuffer buf = ByteBuffer.allocate(serde.recordSize(amv, cache));
        serde.write(amv, cache, new ByteBufferAccessor(buf));
        System.out.println(name + " " + hex(buf));
    }

    static void body(String name, Message message, int version) {
        ObjectSerializationCache cache = new ObjectSerializationCache();
        ByteBuffer buf = ByteBuffer.allocate(message.size(cache, (short) version));
        message.write(new ByteBufferAccessor(buf), cache, (short) version);
        System.out.println(name + " " + hex(buf));
    }

    public static void main(String[] args) {
        framed("topic_v0", new TopicRecord().setName("orders").setTopicId(TOPIC), 0);
        PartitionRecord partition = new PartitionRecord()
            .setPartitionId(3)
            .setTopicId(TOPIC)
            .setReplicas(Arrays.asList(1, 2, 3))
            .setIsr(Arrays.asList(1, 2))
            .setRemovingReplicas(List.of())
            .setAddingReplicas(List.of(3))
            .setLeader(1)
            .setLeaderRecoveryState((byte) 1)
            .setLeaderEpoch(7)
            .setPartitionEpoch(9)
            .setDirectories(Arrays.asList(DIR_A, DIR_B, DIR_A))
            .setEligibleLeaderReplicas(List.of(2))
            .setLastKnownElr(null);
        framed("partition_v0", partition.duplicate().setDirectories(List.of()).setEligibleLeaderReplicas(null), 0);
        framed("partition_v2", partition, 2);
        framed("config_v0", new ConfigRecord()
            .setResourceType((byte) 2)
            .setResourceName("orders")
            .setName("retention.ms")
            .setValue("86400000"), 0);
        framed("config_null_value_v0", new ConfigRecord()
            .setResourceType((byte) 4)
            .setResourceName("")
            .setName("log.retention.bytes")
            .setValue(null), 0);
        framed("producer_ids_v0", new ProducerIdsRecord()
            .setBrokerId(1)
            .setBrokerEpoch(5)
            .setNextProducerId(1000), 0);
        framed("feature_level_v0", new FeatureLevelRecord()
            .setName("metadata.version")
            .setFeatureLevel((short) 27), 0);
        framed("remove_topic_v0", new RemoveTopicRecord().setTopicId(TOPIC), 0);
        framed("partition_change_v2", new PartitionChangeRecord()
            .setPartitionId(0)
            .setTopicId(TOPIC)
            .setIsr(Arrays.asList(1, 3))
            .setLeader(3)
            .setEligibleLeaderReplicas(List.of()), 2);
        RegisterBrokerRecord.BrokerEndpointCollection endpoints =
            new RegisterBrokerRecord.BrokerEndpointCollection();
        endpoints.add(new RegisterBrokerRecord.BrokerEndpoint()
            .setName("PLAINTEXT").setHost("localhost").setPort(9092).setSecurityProtocol((short) 0));
        RegisterBrokerRecord.BrokerFeatureCollection features =
            new RegisterBrokerRecord.BrokerFeatureCollection();
        features.add(new RegisterBrokerRecord.BrokerFeature()
            .setName("metadata.version").setMinSupportedVersion((short) 7).setMaxSupportedVersion((short) 27));
        framed("register_broker_v4", new RegisterBrokerRecord()
            .setBrokerId(1)
            .setIncarnationId(DIR_B)
            .setBrokerEpoch(42)
            .setEndPoints(endpoints)
            .setFeatures(features)
            .setRack(null)
            .setFenced(false)
            .setInControlledShutdown(true)
            .setLogDirs(List.of(DIR_A)), 4);
        VotersRecord.EndpointCollection voterEndpoints = new VotersRecord.EndpointCollection();
        voterEndpoints.add(new VotersRecord.Endpoint().setName("CONTROLLER").setHost("127.0.0.1").setPort(9093));
        body("voters_v0", new VotersRecord()
            .setVersion((short) 0)
            .setVoters(List.of(new VotersRecord.Voter()
                .setVoterId(1)
                .setVoterDirectoryId(DIR_A)
                .setEndpoints(voterEndpoints)
                .setKRaftVersionFeature(new VotersRecord.KRaftVersionFeature()
                    .setMinSupportedVersion((short) 0)
                    .setMaxSupportedVersion((short) 1)))), 0);
    }
}
