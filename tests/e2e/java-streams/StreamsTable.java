// A Kafka Streams 4.3.1 application for the e2e tests (compiled against the kafka-streams jars that
// scripts/kafka.sh fetch-streams brings; at_least_once).
//
//   StreamsTable BOOTSTRAP APP_ID INPUT_TOPIC STATE_DIR EXPECTED_TOTAL [k=v ...]
//       Counts INPUT_TOPIC's records per key into a KTable (store "counts", changelog topic
//       APP_ID-counts-changelog, record cache off so every update reaches the changelog). Runs until
//       the counts in the store add up to EXPECTED_TOTAL (or streams.total.ms, default 60000, runs
//       out), then closes cleanly. k=v settings go to StreamsConfig (e.g. topic.segment.ms=100 for
//       the changelog's config). Prints JSON lines:
//         {"type":"restored","store":s,"partition":p,"records":n}   (one per restored changelog partition)
//         {"type":"table","counts":{key:count,...},"total":t}
//       and exits 1 if the total was not reached.
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StoreQueryParameters;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.processor.StateRestoreListener;
import org.apache.kafka.streams.state.KeyValueIterator;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.QueryableStoreTypes;
import org.apache.kafka.streams.state.ReadOnlyKeyValueStore;

public class StreamsTable {
    static final PrintStream OUT = new PrintStream(System.out, true, StandardCharsets.UTF_8);

    static String quote(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') b.append('\\');
            b.append(c);
        }
        return b.append('"').toString();
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 5) {
            System.err.println("usage: StreamsTable BOOTSTRAP APP_ID INPUT_TOPIC STATE_DIR EXPECTED_TOTAL [k=v ...]");
            System.exit(2);
        }
        Properties p = new Properties();
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, args[1]);
        p.put(StreamsConfig.STATE_DIR_CONFIG, args[3]);
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.AT_LEAST_ONCE);
        p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, "0");
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, "200");
        p.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");
        long totalMs = 60000;
        for (int i = 5; i < args.length; i++) {
            int eq = args[i].indexOf('=');
            if (eq <= 0) throw new IllegalArgumentException("bad setting " + args[i]);
            String k = args[i].substring(0, eq), v = args[i].substring(eq + 1);
            if (k.equals("streams.total.ms")) totalMs = Long.parseLong(v);
            else p.put(k, v);
        }
        String input = args[2];
        long expected = Long.parseLong(args[4]);

        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(input, Consumed.with(Serdes.String(), Serdes.String()))
                .groupByKey()
                .count(Materialized.<String, Long, KeyValueStore<Bytes, byte[]>>as("counts")
                        .withKeySerde(Serdes.String())
                        .withValueSerde(Serdes.Long()));

        KafkaStreams streams = new KafkaStreams(builder.build(), p);
        streams.setGlobalStateRestoreListener(new StateRestoreListener() {
            final AtomicLong restored = new AtomicLong();

            @Override
            public void onRestoreStart(TopicPartition tp, String store, long start, long end) {
                restored.set(0);
            }

            @Override
            public void onBatchRestored(TopicPartition tp, String store, long batchEnd, long n) {
                restored.addAndGet(n);
            }

            @Override
            public void onRestoreEnd(TopicPartition tp, String store, long total) {
                OUT.println("{\"type\":\"restored\",\"store\":" + quote(store) + ",\"partition\":" + tp.partition()
                        + ",\"records\":" + total + "}");
            }
        });
        streams.start();
        long deadline = System.currentTimeMillis() + totalMs;
        TreeMap<String, Long> counts = new TreeMap<>();
        long total = -1;
        try {
            while (System.currentTimeMillis() < deadline) {
                Thread.sleep(100);
                if (streams.state() != KafkaStreams.State.RUNNING) continue;
                ReadOnlyKeyValueStore<String, Long> store;
                try {
                    store = streams.store(StoreQueryParameters.fromNameAndType("counts",
                            QueryableStoreTypes.<String, Long>keyValueStore()));
                } catch (Exception e) {
                    continue; // not queryable yet (restoring, rebalancing)
                }
                counts.clear();
                total = 0;
                try (KeyValueIterator<String, Long> it = store.all()) {
                    while (it.hasNext()) {
                        KeyValue<String, Long> kv = it.next();
                        counts.put(kv.key, kv.value);
                        total += kv.value;
                    }
                } catch (Exception e) {
                    continue;
                }
                if (total >= expected) break;
            }
        } finally {
            streams.close(Duration.ofSeconds(30));
        }
        StringBuilder b = new StringBuilder("{\"type\":\"table\",\"counts\":{");
        boolean first = true;
        for (var e : counts.entrySet()) {
            if (!first) b.append(',');
            first = false;
            b.append(quote(e.getKey())).append(':').append(e.getValue());
        }
        b.append("},\"total\":").append(total).append('}');
        OUT.println(b);
        System.exit(total == expected ? 0 : 1);
    }
}
