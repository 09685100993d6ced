// Prints, for each production metadata.version of Apache Kafka, the record
// versions Kafka writes at it, one line per level:
// `<feature level> <name> <RegisterBrokerRecord> <PartitionRecord>
// <PartitionChangeRecord> <didMetadataChange>`. Compiled and run against
// the Kafka 4.3.1 jars by crates/protocol/tests/metadata_records.rs
// (FJORD_KAFKA_LIBS=<dir of jars>); its output is committed as
// kafka_metadata_versions.txt.

import org.apache.kafka.server.common.MetadataVersion;

public class KafkaMetadataVersions {
    public static void main(String[] args) {
        for (MetadataVersion mv : MetadataVersion.VERSIONS) {
            if (!mv.isProduction()) {
                continue;
            }
            System.out.println(mv.featureLevel() + " " + mv.version() + " "
                + mv.registerBrokerRecordVersion() + " " + mv.partitionRecordVersion() + " "
                + mv.partitionChangeRecordVersion() + " " + mv.didMetadataChange());
        }
    }
}
