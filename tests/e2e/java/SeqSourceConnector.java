// A Kafka Connect source connector for the e2e tests: its one task writes records
// "<seq>" (key "k<seq % keys>") to `topic`, `batch` at a time every `interval.ms`, and keeps its
// place as a source offset {"seq": n} under the partition {"source": "seq"}, so a task that
// starts again (a worker restart) goes on from the last offset Connect committed.
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.connect.connector.Task;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.source.SourceConnector;
import org.apache.kafka.connect.source.SourceRecord;
import org.apache.kafka.connect.source.SourceTask;

public class SeqSourceConnector extends SourceConnector {
    private Map<String, String> props;

    @Override
    public void start(Map<String, String> props) {
        this.props = props;
    }

    @Override
    public Class<? extends Task> taskClass() {
        return SeqSourceTask.class;
    }

    @Override
    public List<Map<String, String>> taskConfigs(int maxTasks) {
        return List.of(props);
    }

    @Override
    public void stop() {}

    @Override
    public ConfigDef config() {
        return new ConfigDef()
                .define("topic", ConfigDef.Type.STRING, ConfigDef.Importance.HIGH, "where to write")
                .define("keys", ConfigDef.Type.INT, 10, ConfigDef.Importance.LOW, "distinct keys")
                .define("batch", ConfigDef.Type.INT, 10, ConfigDef.Importance.LOW, "records per poll")
                .define("interval.ms", ConfigDef.Type.LONG, 50L, ConfigDef.Importance.LOW, "pause per poll");
    }

    @Override
    public String version() {
        return "1";
    }

    public static class SeqSourceTask extends SourceTask {
        static final Map<String, String> PARTITION = Map.of("source", "seq");
        private String topic;
        private int keys;
        private int batch;
        private long intervalMs;
        private long next;

        @Override
        public String version() {
            return "1";
        }

        @Override
        public void start(Map<String, String> props) {
            topic = props.get("topic");
            keys = Integer.parseInt(props.getOrDefault("keys", "10"));
            batch = Integer.parseInt(props.getOrDefault("batch", "10"));
            intervalMs = Long.parseLong(props.getOrDefault("interval.ms", "50"));
            Map<String, Object> offset = context.offsetStorageReader().offset(PARTITION);
            next = offset == null ? 0 : ((Number) offset.get("seq")).longValue() + 1;
        }

        @Override
        public List<SourceRecord> poll() throws InterruptedException {
            Thread.sleep(intervalMs);
            List<SourceRecord> out = new ArrayList<>();
            for (int i = 0; i < batch; i++, next++) {
                out.add(new SourceRecord(PARTITION, Map.of("seq", next), topic, 0,
                        Schema.STRING_SCHEMA, "k" + (next % keys), Schema.STRING_SCHEMA, Long.toString(next)));
            }
            return out;
        }

        @Override
        public void stop() {}
    }
}
