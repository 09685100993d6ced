// A small command-line driver around the Apache Kafka Java client, used by the e2e tests.
// Input and output are JSON lines (Jackson ships with the Kafka jars).
//
//   produce BOOTSTRAP TOPIC [--gen N [--rate-per-s R]] [k=v ...]
//       Records come from stdin, one JSON object per line:
//         {"key": str|null, "value": str|null, "partition": int?, "timestamp": long?,
//          "headers": [[name, value], ...]?, "value_size": int?}
//       (value_size: a value of that many 'x' bytes). With --gen N the program makes N records itself
//       (key "k<i>", value "v<i>", partition from the key's hash) at up to R records/s.
//       Prints one line per acknowledged record:
//         {"type":"ack","i":n,"key":...,"partition":p,"offset":o,"timestamp":t}
//       or {"type":"error","i":n,"key":...,"error":"ExceptionClass","message":...}, then
//       {"type":"done","acked":a,"failed":f,"elapsed_s":s,"throttle_time_avg":ms,"throttle_time_max":ms}
//       (the producer metrics produce-throttle-time-avg/-max: the broker's throttle_time_ms, KIP-219).
//
//   consume BOOTSTRAP TOPICS FROM COUNT [k=v ...]
//       TOPICS is comma-separated; all partitions of each are assigned. FROM is earliest, latest,
//       offset:N or ts:MILLIS (offsetsForTimes; a partition with no such record starts at its end).
//       Prints {"type":"start","positions":{"topic:p":offset}}, then one line per record:
//         {"type":"record","topic","partition","offset","timestamp","timestamp_type","key","value",
//          "headers":[[n,v]...],"value_size"}
//       and stops after COUNT records in total (or when poll.total.ms, default 20000, runs out); COUNT
//       "end" stops instead once every partition's position reaches its end offset as of the start,
//       then prints {"type":"done","count":n,"end_offsets":{...},"beginning_offsets":{...},
//       "elapsed_s":s,"throttle_time_avg":ms,"throttle_time_max":ms} (fetch-throttle-time-avg/-max),
//       "preferred_read_replicas":[ids] (every preferred-read-replica metric value seen after a poll that
//       returned records, KIP-392; -1: the leader) and "node_incoming_bytes":{"node-N":bytes}.
//
//   group BOOTSTRAP TOPIC GROUP [k=v ...]
//       A consumer-group member: subscribes to TOPIC, commits each batch's offsets right after
//       processing it (commitSync), and prints JSON lines, each with "t" (wall-clock seconds):
//         {"type":"assigned"|"revoked"|"lost","partitions":[p...],"generation":g}
//         {"type":"records","recs":[[partition,offset,value]...]}
//         {"type":"commit","offsets":{"p":next}} or {"type":"commit_failed","error":...}
//         {"type":"closed"}
//       Offsets whose commit failed are committed again with the next batch or on revocation.
//       A line "close" on stdin (or EOF) closes the consumer cleanly. The Python twin is
//       tools/group_member.py.
//
//   txns BOOTSTRAP TOPIC TXN_ID COUNT [k=v ...]
//       COUNT transactions with TXN_ID, transaction i writing "c<i>-p<p>" (committed) or "a<i>-p<p>"
//       (aborted after a flush, so they are in the log: every third one, i % 3 == 2) to every
//       partition p of TOPIC. Prints
//         {"type":"done","committed":[values...],"aborted":[values...]}
//       or {"type":"error",...} if a transaction fails.
//
//   txnepochs BOOTSTRAP TOPIC TXN_ID GROUP [k=v ...]
//       Four transactions with TXN_ID on partition 0 of TOPIC: "c0" committed, "a1" aborted (after a
//       flush, so it is in the log), "c2" committed together with offset 7 of TOPIC partition 0 for
//       GROUP (sendOffsetsToTransaction), "c3" committed. After each one the admin client's
//       DescribeTransactions gives the producer id and epoch the coordinator holds. Prints
//         {"type":"done","transaction_version":v,"epochs":[e...],"producer_ids":[p...]}
//       (v: the finalized transaction.version from DescribeFeatures, 0 when not finalized)
//       or {"type":"error",...}.
//
//   eos BOOTSTRAP IN OUT GROUP TXN_ID TOTAL [k=v ...]
//       Exactly-once consume-transform-produce: a read_committed consumer in GROUP reads IN, a producer
//       with TXN_ID writes "out-"+value to OUT (same partition) and commits the consumer's offsets in the
//       same transaction (sendOffsetsToTransaction with the group metadata). On an abortable error the
//       transaction is aborted and the consumer rewound to the group's committed offsets; on a fatal one
//       (fenced, timed out) a new producer with the same TXN_ID takes over. Prints
//         {"type":"committed","records":n,"total":t} after each commit, {"type":"retry","error":...}
//       and stops after TOTAL records in committed transactions (or a line "stop" on stdin / EOF),
//       printing {"type":"done","total":t}.
//
// Values are UTF-8 strings; keys and values may be null.
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class E2EClient {
    static final ObjectMapper JSON = new ObjectMapper();
    static final PrintStream OUT = new PrintStream(System.out, true, StandardCharsets.UTF_8);

    static synchronized void emit(ObjectNode n) {
        OUT.println(n.toString());
    }

    static byte[] bytes(String s) {
        return s == null ? null : s.getBytes(StandardCharsets.UTF_8);
    }

    static String str(byte[] b) {
        return b == null ? null : new String(b, StandardCharsets.UTF_8);
    }

    static Properties props(String bootstrap, List<String> kvs) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        for (String kv : kvs) {
            int eq = kv.indexOf('=');
            if (eq <= 0) throw new IllegalArgumentException("bad setting " + kv);
            p.put(kv.substring(0, eq), kv.substring(eq + 1));
        }
        return p;
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 1) {
            System.err.println("usage: E2EClient produce|consume ...");
            System.exit(2);
        }
        switch (args[0]) {
            case "produce":
                produce(args);
                break;
            case "consume":
                consume(args);
                break;
            case "group":
                group(args);
                break;
            case "txn":
                txn(args);
                break;
            case "txns":
                txns(args);
                break;
            case "eos":
                eos(args);
                break;
            case "txnepochs":
                txnEpochs(args);
                break;
            default:
                System.err.println("unknown command " + args[0]);
                System.exit(2);
        }
    }

    static void produce(String[] args) throws Exception {
        String bootstrap = args[1];
        String topic = args[2];
        long gen = -1;
        double rate = 0;
        List<String> kvs = new ArrayList<>();
        for (int i = 3; i < args.length; i++) {
            if (args[i].equals("--gen")) gen = Long.parseLong(args[++i]);
            else if (args[i].equals("--rate-per-s")) rate = Double.parseDouble(args[++i]);
            else kvs.add(args[i]);
        }
        Properties p = props(bootstrap, kvs);
        p.putIfAbsent("linger.ms", "5");
        AtomicLong acked = new AtomicLong();
        AtomicLong failed = new AtomicLong();
        ObjectNode done = JSON.createObjectNode();
        done.put("type", "done");
        try (KafkaProducer<byte[], byte[]> producer =
                new KafkaProducer<>(p, new ByteArraySerializer(), new ByteArraySerializer())) {
            long started = System.nanoTime();
            if (gen >= 0) {
                for (long i = 0; i < gen; i++) {
                    if (rate > 0) {
                        long due = started + (long) (i * 1e9 / rate);
                        long wait = due - System.nanoTime();
                        if (wait > 0) Thread.sleep(wait / 1_000_000, (int) (wait % 1_000_000));
                    }
                    String key = "k" + i;
                    send(producer, new ProducerRecord<>(topic, null, null, bytes(key), bytes("v" + i)), i, key,
                            acked, failed);
                }
            } else {
                BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
                String line;
                long i = 0;
                while ((line = in.readLine()) != null) {
                    if (line.isBlank()) continue;
                    JsonNode r = JSON.readTree(line);
                    String key = r.hasNonNull("key") ? r.get("key").asText() : null;
                    byte[] value;
                    if (r.hasNonNull("value_size")) {
                        value = new byte[r.get("value_size").asInt()];
                        java.util.Arrays.fill(value, (byte) 'x');
                    } else {
                        value = r.hasNonNull("value") ? bytes(r.get("value").asText()) : null;
                    }
                    Integer partition = r.hasNonNull("partition") ? r.get("partition").asInt() : null;
                    Long ts = r.hasNonNull("timestamp") ? r.get("timestamp").asLong() : null;
                    ProducerRecord<byte[], byte[]> rec = new ProducerRecord<>(topic, partition, ts, bytes(key), value);
                    if (r.has("headers")) {
                        for (JsonNode h : r.get("headers")) {
                            rec.headers().add(h.get(0).asText(), h.get(1).isNull() ? null : bytes(h.get(1).asText()));
                        }
                    }
                    send(producer, rec, i++, key, acked, failed);
                }
            }
            producer.flush();
            done.put("elapsed_s", (System.nanoTime() - started) / 1e9);
            throttleMetrics(done, producer.metrics(), "produce");
        }
        done.put("acked", acked.get());
        done.put("failed", failed.get());
        emit(done);
    }

    /** txn BOOTSTRAP TOPIC TRANSACTIONAL_ID [k=v ...]: one transaction of one record, or the error that ended it. */
    static void txn(String[] args) throws Exception {
        String bootstrap = args[1];
        String topic = args[2];
        List<String> kvs = new ArrayList<>();
        for (int i = 4; i < args.length; i++) kvs.add(args[i]);
        Properties p = props(bootstrap, kvs);
        p.put("transactional.id", args[3]);
        ObjectNode n = JSON.createObjectNode();
        long started = System.nanoTime();
        try (KafkaProducer<byte[], byte[]> producer =
                new KafkaProducer<>(p, new ByteArraySerializer(), new ByteArraySerializer())) {
            producer.initTransactions();
            producer.beginTransaction();
            producer.send(new ProducerRecord<>(topic, bytes("k"), bytes("v"))).get();
            producer.commitTransaction();
            n.put("type", "committed");
        } catch (Exception e) {
            n.put("type", "error");
            n.put("error", e.getClass().getSimpleName());
            n.put("message", String.valueOf(e.getMessage()));
        }
        n.put("elapsed_ms", (System.nanoTime() - started) / 1_000_000);
        emit(n);
    }

    static void txns(String[] args) throws Exception {
        String bootstrap = args[1];
        String topic = args[2];
        int count = Integer.parseInt(args[4]);
        List<String> kvs = new ArrayList<>();
        for (int i = 5; i < args.length; i++) kvs.add(args[i]);
        Properties p = props(bootstrap, kvs);
        p.put("transactional.id", args[3]);
        ObjectNode n = JSON.createObjectNode();
        ArrayNode committed = n.putArray("committed");
        ArrayNode aborted = n.putArray("aborted");
        try (KafkaProducer<byte[], byte[]> producer =
                new KafkaProducer<>(p, new ByteArraySerializer(), new ByteArraySerializer())) {
            producer.initTransactions();
            int partitions = producer.partitionsFor(topic).size();
            for (int i = 0; i < count; i++) {
                boolean abort = i % 3 == 2;
                producer.beginTransaction();
                for (int part = 0; part < partitions; part++) {
                    String v = (abort ? "a" : "c") + i + "-p" + part;
                    producer.send(new ProducerRecord<>(topic, part, bytes("k"), bytes(v)));
                    (abort ? aborted : committed).add(v);
                }
                if (abort) {
                    // Written first, so that the log holds the aborted records.
                    producer.flush();
                    producer.abortTransaction();
                } else {
                    producer.commitTransaction();
                }
            }
            n.put("type", "done");
        } catch (Exception e) {
            n.put("type", "error");
            n.put("error", e.getClass().getSimpleName());
            n.put("message", String.valueOf(e.getMessage()));
        }
        emit(n);
    }

    static void txnEpochs(String[] args) throws Exception {
        String bootstrap = args[1];
        String topic = args[2];
        String txnId = args[3];
        String group = args[4];
        List<String> kvs = new ArrayList<>();
        for (int i = 5; i < args.length; i++) kvs.add(args[i]);
        Properties p = props(bootstrap, kvs);
        p.put("transactional.id", txnId);
        ObjectNode n = JSON.createObjectNode();
        ArrayNode epochs = n.putArray("epochs");
        ArrayNode pids = n.putArray("producer_ids");
        try (org.apache.kafka.clients.admin.Admin admin =
                        org.apache.kafka.clients.admin.Admin.create(props(bootstrap, List.of()));
                KafkaProducer<byte[], byte[]> producer =
                        new KafkaProducer<>(p, new ByteArraySerializer(), new ByteArraySerializer())) {
            org.apache.kafka.clients.admin.FinalizedVersionRange tv = admin.describeFeatures().featureMetadata().get()
                    .finalizedFeatures().get("transaction.version");
            n.put("transaction_version", tv == null ? 0 : tv.maxVersionLevel());
            producer.initTransactions();
            String[] values = {"c0", "a1", "c2", "c3"};
            for (String v : values) {
                producer.beginTransaction();
                producer.send(new ProducerRecord<>(topic, 0, bytes("k"), bytes(v))).get();
                if (v.equals("c2")) {
                    producer.sendOffsetsToTransaction(
                            Map.of(new TopicPartition(topic, 0), new OffsetAndMetadata(7)),
                            new org.apache.kafka.clients.consumer.ConsumerGroupMetadata(group));
                }
                if (v.startsWith("a")) {
                    producer.abortTransaction();
                } else {
                    producer.commitTransaction();
                }
                org.apache.kafka.clients.admin.TransactionDescription d =
                        admin.describeTransactions(List.of(txnId)).description(txnId).get();
                epochs.add(d.producerEpoch());
                pids.add(d.producerId());
            }
            n.put("type", "done");
        } catch (Exception e) {
            n.put("type", "error");
            n.put("error", e.getClass().getSimpleName());
            n.put("message", String.valueOf(e.getMessage()));
        }
        emit(n);
    }

    static KafkaProducer<byte[], byte[]> eosProducer(String bootstrap, String txnId) {
        Properties p = props(bootstrap, List.of());
        p.put("transactional.id", txnId);
        p.put("transaction.timeout.ms", "60000");
        p.put("linger.ms", "5");
        KafkaProducer<byte[], byte[]> producer =
                new KafkaProducer<>(p, new ByteArraySerializer(), new ByteArraySerializer());
        producer.initTransactions();
        return producer;
    }

    static void eos(String[] args) throws Exception {
        String bootstrap = args[1];
        String in = args[2];
        String out = args[3];
        String group = args[4];
        String txnId = args[5];
        long total = Long.parseLong(args[6]);
        List<String> kvs = new ArrayList<>();
        for (int i = 7; i < args.length; i++) kvs.add(args[i]);
        Properties cp = props(bootstrap, kvs);
        cp.put("group.id", group);
        cp.put("enable.auto.commit", "false");
        cp.put("auto.offset.reset", "earliest");
        cp.put("isolation.level", "read_committed");
        AtomicBoolean stop = new AtomicBoolean(false);
        Thread stdin = new Thread(() -> {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8))) {
                String line;
                while ((line = r.readLine()) != null) {
                    if (line.trim().equals("stop")) break;
                }
            } catch (Exception e) {
                // EOF or closed: stop
            }
            stop.set(true);
        });
        stdin.setDaemon(true);
        stdin.start();
        long done = 0;
        try (KafkaConsumer<byte[], byte[]> consumer =
                new KafkaConsumer<>(cp, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            consumer.subscribe(List.of(in));
            KafkaProducer<byte[], byte[]> producer = null;
            while (done < total && !stop.get()) {
                try {
                    if (producer == null) producer = eosProducer(bootstrap, txnId);
                    var records = consumer.poll(Duration.ofMillis(500));
                    if (records.isEmpty()) continue;
                    producer.beginTransaction();
                    Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
                    for (ConsumerRecord<byte[], byte[]> r : records) {
                        producer.send(new ProducerRecord<>(out, r.partition(), r.key(), bytes("out-" + str(r.value()))));
                        offsets.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                    }
                    producer.sendOffsetsToTransaction(offsets, consumer.groupMetadata());
                    producer.commitTransaction();
                    done += records.count();
                    ObjectNode n = JSON.createObjectNode();
                    n.put("type", "committed");
                    n.put("records", records.count());
                    n.put("total", done);
                    emit(n);
                } catch (Exception e) {
                    ObjectNode n = JSON.createObjectNode();
                    n.put("type", "retry");
                    n.put("error", e.getClass().getSimpleName());
                    n.put("message", String.valueOf(e.getMessage()));
                    emit(n);
                    boolean aborted = false;
                    if (producer != null) {
                        try {
                            producer.abortTransaction();
                            aborted = true;
                        } catch (Exception abortFailed) {
                            // fatal state: replaced below
                        }
                        if (!aborted) {
                            try {
                                producer.close(Duration.ofSeconds(5));
                            } catch (Exception ignored) {
                                // closing a broken producer
                            }
                            producer = null;
                        }
                    }
                    // Rewind to what the group has committed (a pending commit is waited for).
                    while (!stop.get()) {
                        try {
                            var assigned = consumer.assignment();
                            var committed = consumer.committed(assigned, Duration.ofSeconds(30));
                            for (TopicPartition tp : assigned) {
                                OffsetAndMetadata c = committed.get(tp);
                                consumer.seek(tp, c == null ? 0 : c.offset());
                            }
                            break;
                        } catch (Exception rewindFailed) {
                            Thread.sleep(500);
                        }
                    }
                }
            }
            if (producer != null) producer.close(Duration.ofSeconds(10));
        }
        ObjectNode n = JSON.createObjectNode();
        n.put("type", "done");
        n.put("total", done);
        emit(n);
    }

    static void send(KafkaProducer<byte[], byte[]> producer, ProducerRecord<byte[], byte[]> rec, long i, String key,
            AtomicLong acked, AtomicLong failed) {
        try {
            producer.send(rec, (md, e) -> {
                ObjectNode n = JSON.createObjectNode();
                n.put("i", i);
                n.put("key", key);
                if (e == null) {
                    acked.incrementAndGet();
                    n.put("type", "ack");
                    n.put("partition", md.partition());
                    n.put("offset", md.offset());
                    n.put("timestamp", md.timestamp());
                } else {
                    failed.incrementAndGet();
                    n.put("type", "error");
                    n.put("error", e.getClass().getSimpleName());
                    n.put("message", String.valueOf(e.getMessage()));
                }
                emit(n);
            });
        } catch (RuntimeException e) {
            // send() itself throws for some errors (e.g. a record larger than max.request.size)
            failed.incrementAndGet();
            ObjectNode n = JSON.createObjectNode();
            n.put("type", "error");
            n.put("i", i);
            n.put("key", key);
            n.put("error", e.getClass().getSimpleName());
            n.put("message", String.valueOf(e.getMessage()));
            emit(n);
        }
    }

    static void consume(String[] args) throws Exception {
        String bootstrap = args[1];
        String[] topics = args[2].split(",");
        String from = args[3];
        boolean toEnd = args[4].equals("end");
        long count = toEnd ? Long.MAX_VALUE : Long.parseLong(args[4]);
        List<String> kvs = new ArrayList<>();
        for (int i = 5; i < args.length; i++) kvs.add(args[i]);
        Properties p = props(bootstrap, kvs);
        long totalMs = Long.parseLong((String) p.getOrDefault("poll.total.ms", "20000"));
        p.remove("poll.total.ms");
        p.putIfAbsent("enable.auto.commit", "false");
        p.putIfAbsent("auto.offset.reset", "earliest");
        try (KafkaConsumer<byte[], byte[]> consumer =
                new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            List<TopicPartition> tps = new ArrayList<>();
            long deadline = System.currentTimeMillis() + totalMs;
            for (String t : topics) {
                List<PartitionInfo> infos = null;
                while (infos == null || infos.isEmpty()) {
                    infos = consumer.partitionsFor(t, Duration.ofSeconds(10));
                    if ((infos == null || infos.isEmpty()) && System.currentTimeMillis() > deadline) {
                        throw new IllegalStateException("no partitions for " + t);
                    }
                }
                for (PartitionInfo pi : infos) tps.add(new TopicPartition(t, pi.partition()));
            }
            consumer.assign(tps);
            if (from.equals("earliest")) {
                consumer.seekToBeginning(tps);
            } else if (from.equals("latest")) {
                consumer.seekToEnd(tps);
            } else if (from.startsWith("offset:")) {
                long off = Long.parseLong(from.substring(7));
                for (TopicPartition tp : tps) consumer.seek(tp, off);
            } else if (from.startsWith("ts:")) {
                long ts = Long.parseLong(from.substring(3));
                Map<TopicPartition, Long> q = new HashMap<>();
                for (TopicPartition tp : tps) q.put(tp, ts);
                Map<TopicPartition, OffsetAndTimestamp> found = consumer.offsetsForTimes(q, Duration.ofSeconds(15));
                Map<TopicPartition, Long> ends = consumer.endOffsets(tps, Duration.ofSeconds(15));
                for (TopicPartition tp : tps) {
                    OffsetAndTimestamp o = found.get(tp);
                    consumer.seek(tp, o == null ? ends.get(tp) : o.offset());
                }
            } else {
                throw new IllegalArgumentException("bad FROM " + from);
            }
            ObjectNode start = JSON.createObjectNode();
            start.put("type", "start");
            ObjectNode pos = start.putObject("positions");
            for (TopicPartition tp : tps) pos.put(tp.topic() + ":" + tp.partition(), consumer.position(tp, Duration.ofSeconds(15)));
            emit(start);
            Map<TopicPartition, Long> stopAt = toEnd ? consumer.endOffsets(tps, Duration.ofSeconds(15)) : Map.of();
            java.util.TreeSet<Integer> preferredSeen = new java.util.TreeSet<>();
            long n = 0;
            while (n < count && System.currentTimeMillis() < deadline) {
                if (toEnd) {
                    boolean atEnd = true;
                    for (TopicPartition tp : tps) {
                        if (consumer.position(tp, Duration.ofSeconds(15)) < stopAt.get(tp)) atEnd = false;
                    }
                    if (atEnd) break;
                }
                ConsumerRecords<byte[], byte[]> polled = consumer.poll(Duration.ofMillis(200));
                if (!polled.isEmpty()) preferredReplicas(consumer.metrics(), preferredSeen);
                for (ConsumerRecord<byte[], byte[]> r : polled) {
                    ObjectNode o = JSON.createObjectNode();
                    o.put("type", "record");
                    o.put("topic", r.topic());
                    o.put("partition", r.partition());
                    o.put("offset", r.offset());
                    o.put("timestamp", r.timestamp());
                    o.put("timestamp_type", r.timestampType().name);
                    o.put("key", str(r.key()));
                    byte[] v = r.value();
                    o.put("value_size", v == null ? -1 : v.length);
                    o.put("value", v == null || v.length > 4096 ? null : str(v));
                    ArrayNode hs = o.putArray("headers");
                    for (Header h : r.headers()) {
                        ArrayNode pair = hs.addArray();
                        pair.add(h.key());
                        pair.add(str(h.value()));
                    }
                    emit(o);
                    n++;
                }
            }
            ObjectNode done = JSON.createObjectNode();
            done.put("type", "done");
            done.put("count", n);
            done.put("elapsed_s", (System.currentTimeMillis() - deadline + totalMs) / 1e3);
            throttleMetrics(done, consumer.metrics(), "fetch");
            ArrayNode preferred = done.putArray("preferred_read_replicas");
            for (int r : preferredSeen) preferred.add(r);
            ObjectNode nodeBytes = done.putObject("node_incoming_bytes");
            for (Map.Entry<org.apache.kafka.common.MetricName, ? extends org.apache.kafka.common.Metric> e : consumer.metrics().entrySet()) {
                if (e.getKey().name().equals("incoming-byte-total") && e.getKey().tags().containsKey("node-id")
                        && e.getValue().metricValue() instanceof Double d) {
                    nodeBytes.put(e.getKey().tags().get("node-id"), d.longValue());
                }
            }
            ObjectNode ends = done.putObject("end_offsets");
            for (Map.Entry<TopicPartition, Long> e : consumer.endOffsets(tps, Duration.ofSeconds(15)).entrySet()) {
                ends.put(e.getKey().topic() + ":" + e.getKey().partition(), e.getValue());
            }
            ObjectNode begins = done.putObject("beginning_offsets");
            for (Map.Entry<TopicPartition, Long> e : consumer.beginningOffsets(tps, Duration.ofSeconds(15)).entrySet()) {
                begins.put(e.getKey().topic() + ":" + e.getKey().partition(), e.getValue());
            }
            emit(done);
        }
    }

    /** Adds the partitions' preferred-read-replica metric values (KIP-392; -1: the leader) to `seen`. */
    static void preferredReplicas(Map<org.apache.kafka.common.MetricName, ? extends org.apache.kafka.common.Metric> metrics,
            java.util.Set<Integer> seen) {
        for (Map.Entry<org.apache.kafka.common.MetricName, ? extends org.apache.kafka.common.Metric> e : metrics.entrySet()) {
            if (e.getKey().name().equals("preferred-read-replica") && e.getValue().metricValue() instanceof Number v) {
                seen.add(v.intValue());
            }
        }
    }

    /** The client's PREFIX-throttle-time-avg and -max metrics (NaN/absent as -1) into `out`. */
    static void throttleMetrics(ObjectNode out, Map<org.apache.kafka.common.MetricName, ? extends org.apache.kafka.common.Metric> metrics,
            String prefix) {
        for (String stat : new String[] {"avg", "max"}) {
            double v = -1;
            for (Map.Entry<org.apache.kafka.common.MetricName, ? extends org.apache.kafka.common.Metric> e : metrics.entrySet()) {
                if (e.getKey().name().equals(prefix + "-throttle-time-" + stat)) {
                    Object m = e.getValue().metricValue();
                    if (m instanceof Double d && !d.isNaN()) v = Math.max(v, d);
                }
            }
            out.put("throttle_time_" + stat, v);
        }
    }

    static double nowSeconds() {
        Instant now = Instant.now();
        return now.getEpochSecond() + now.getNano() / 1e9;
    }

    static ObjectNode line(String type) {
        ObjectNode n = JSON.createObjectNode();
        n.put("type", type);
        n.put("t", nowSeconds());
        return n;
    }

    static void group(String[] args) throws Exception {
        String bootstrap = args[1];
        String topic = args[2];
        String groupId = args[3];
        List<String> kvs = new ArrayList<>();
        for (int i = 4; i < args.length; i++) kvs.add(args[i]);
        Properties p = props(bootstrap, kvs);
        p.put("group.id", groupId);
        p.putIfAbsent("enable.auto.commit", "false");
        p.putIfAbsent("auto.offset.reset", "earliest");
        AtomicBoolean stop = new AtomicBoolean(false);
        Thread watcher = new Thread(() -> {
            try {
                BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
                String l;
                while ((l = in.readLine()) != null) {
                    if (l.trim().equals("close")) break;
                }
            } catch (Exception e) {
                // EOF or a closed stdin: stop as well
            }
            stop.set(true);
        });
        watcher.setDaemon(true);
        watcher.start();
        KafkaConsumer<byte[], byte[]> consumer =
                new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer());
        // offsets processed but not committed (a commit failed): committed on revocation
        Map<TopicPartition, OffsetAndMetadata> pending = new HashMap<>();
        consumer.subscribe(List.of(topic), new ConsumerRebalanceListener() {
            void report(String type, Collection<TopicPartition> parts) {
                ObjectNode n = line(type);
                ArrayNode ps = n.putArray("partitions");
                parts.stream().map(TopicPartition::partition).sorted().forEach(ps::add);
                n.put("generation", consumer.groupMetadata().generationId());
                emit(n);
            }

            public void onPartitionsRevoked(Collection<TopicPartition> parts) {
                Map<TopicPartition, OffsetAndMetadata> mine = new HashMap<>();
                for (TopicPartition tp : parts) {
                    OffsetAndMetadata o = pending.remove(tp);
                    if (o != null) mine.put(tp, o);
                }
                if (!mine.isEmpty()) commit(consumer, mine, null);
                report("revoked", parts);
            }

            public void onPartitionsAssigned(Collection<TopicPartition> parts) {
                report("assigned", parts);
            }

            public void onPartitionsLost(Collection<TopicPartition> parts) {
                for (TopicPartition tp : parts) pending.remove(tp);
                report("lost", parts);
            }
        });
        while (!stop.get()) {
            Map<TopicPartition, OffsetAndMetadata> next = new HashMap<>();
            var polled = consumer.poll(Duration.ofMillis(100));
            ObjectNode recs = line("records");
            ArrayNode rs = recs.putArray("recs");
            for (ConsumerRecord<byte[], byte[]> r : polled) {
                ArrayNode one = rs.addArray();
                one.add(r.partition());
                one.add(r.offset());
                one.add(str(r.value()));
                next.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
            }
            if (next.isEmpty()) continue;
            emit(recs);
            pending.putAll(next);
            commit(consumer, new HashMap<>(pending), pending);
        }
        consumer.close();
        emit(line("closed"));
    }

    /** commitSync(offsets); on success they leave `pending`, on failure they stay there (if not null). */
    static void commit(KafkaConsumer<byte[], byte[]> consumer, Map<TopicPartition, OffsetAndMetadata> offsets,
            Map<TopicPartition, OffsetAndMetadata> pending) {
        try {
            consumer.commitSync(offsets);
            ObjectNode c = line("commit");
            ObjectNode offs = c.putObject("offsets");
            for (Map.Entry<TopicPartition, OffsetAndMetadata> e : offsets.entrySet()) {
                offs.put(String.valueOf(e.getKey().partition()), e.getValue().offset());
                if (pending != null && e.getValue().equals(pending.get(e.getKey()))) pending.remove(e.getKey());
            }
            emit(c);
        } catch (Exception e) {
            if (pending != null) pending.putAll(offsets);
            ObjectNode c = line("commit_failed");
            c.put("error", e.getClass().getSimpleName() + ": " + e.getMessage());
            emit(c);
        }
    }
}
