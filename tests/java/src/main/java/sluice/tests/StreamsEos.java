package sluice.tests;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.LongDeserializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;

/**
 * Kafka Streams exactly_once_v2 under kill -9 (of the app and of the broker).
 *
 * - streams-app BOOTSTRAP APP_ID INPUT OUTPUT STATE_DIR: counts words. Input values are "word:seq";
 *   the app re-keys by word (a repartition topic), counts in a state store (a compacted changelog)
 *   with caching off, and writes every new count to OUTPUT (key word, value Long). Prints
 *   "STATE <state>" on each state change and "processed=N" twice a second.
 * - streams-generate BOOTSTRAP INPUT COUNT RATE_PER_S KEYS [STOP_FILE]: an idempotent producer
 *   writing records "w<i % KEYS>:<i>", paced, at least COUNT of them and, given STOP_FILE, on until
 *   that file exists (at most 10 * COUNT); survives a broker restart (long delivery timeout).
 *   Prints "generated=N failed=F" at the end.
 * - streams-verify BOOTSTRAP INPUT OUTPUT: reads both topics read_committed and prints one line of
 *   JSON: input records, duplicated input seqs, keys, output records (and as read_uncommitted sees
 *   them: more when transactions were aborted), complete (every key's last
 *   count equals its number of input records) and exact (every key's counts in the output are
 *   exactly 1, 2, ..., n: nothing missing, nothing twice), and the first problems found.
 */
final class StreamsEos {
    private StreamsEos() {}

    static void app(String bootstrap, String[] a) throws Exception {
        String appId = a[0];
        String input = a[1];
        String output = a[2];
        String stateDir = a[3];
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 200);
        p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
        p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
        p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
        // Static membership: a restarted instance takes its place in the group without waiting
        // for the killed one's session to expire.
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG), appId + "-instance");
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG), 10000);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG), 1000);
        p.put(StreamsConfig.producerPrefix(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG), 10000);

        AtomicLong processed = new AtomicLong();
        StreamsBuilder b = new StreamsBuilder();
        b.stream(input, Consumed.with(Serdes.String(), Serdes.String()))
                .peek((k, v) -> processed.incrementAndGet())
                .selectKey((k, v) -> v.substring(0, Math.max(0, v.indexOf(':'))))
                .groupByKey(Grouped.with("by-word", Serdes.String(), Serdes.String()))
                .count(Materialized.as("counts"))
                .toStream()
                .to(output, Produced.with(Serdes.String(), Serdes.Long()));

        KafkaStreams streams = new KafkaStreams(b.build(), p);
        CountDownLatch stopped = new CountDownLatch(1);
        streams.setStateListener((now, before) -> {
            System.out.println("STATE " + now);
            System.out.flush();
            if (now == KafkaStreams.State.ERROR || now == KafkaStreams.State.NOT_RUNNING) {
                stopped.countDown();
            }
        });
        streams.setUncaughtExceptionHandler(e -> {
            System.out.println("THREAD-ERROR " + e);
            System.out.flush();
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.REPLACE_THREAD;
        });
        java.util.concurrent.atomic.AtomicBoolean closing = new java.util.concurrent.atomic.AtomicBoolean();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            closing.set(true);
            streams.close(Duration.ofSeconds(20));
            System.out.println("CLOSED processed=" + processed.get());
            System.out.flush();
        }));
        streams.start();
        while (!stopped.await(500, java.util.concurrent.TimeUnit.MILLISECONDS)) {
            System.out.println("processed=" + processed.get());
            System.out.flush();
        }
        if (closing.get()) {
            // SIGTERM: the shutdown hook closed Streams (NOT_RUNNING); not a failure.
            return;
        }
        throw new IllegalStateException("streams stopped: " + streams.state());
    }

    static void generate(String bootstrap, String[] a) throws Exception {
        String input = a[0];
        int count = Integer.parseInt(a[1]);
        int rate = Integer.parseInt(a[2]);
        int keys = Integer.parseInt(a[3]);
        java.nio.file.Path stopFile = a.length > 4 ? java.nio.file.Path.of(a[4]) : null;
        Properties p = Util.producerProps(bootstrap);
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 120000);
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, 120000);
        AtomicLong failed = new AtomicLong();
        long start = System.nanoTime();
        try (KafkaProducer<String, String> prod = new KafkaProducer<>(p)) {
            int i = 0;
            for (; i < 10 * count; i++) {
                if (i >= count && (stopFile == null || java.nio.file.Files.exists(stopFile))) {
                    break;
                }
                long due = start + (long) i * 1_000_000_000L / rate;
                long wait = due - System.nanoTime();
                if (wait > 0) {
                    Thread.sleep(wait / 1_000_000, (int) (wait % 1_000_000));
                }
                prod.send(new ProducerRecord<>(input, Integer.toString(i), "w" + (i % keys) + ":" + i), (md, e) -> {
                    if (e != null) {
                        failed.incrementAndGet();
                        System.out.println("send failed: " + e);
                    }
                });
                if (i % 500 == 0) {
                    System.out.println("generated=" + i);
                    System.out.flush();
                }
            }
            prod.flush();
            System.out.println("generated=" + i + " failed=" + failed.get());
        }
        if (failed.get() != 0) {
            throw new AssertionError(failed.get() + " sends failed");
        }
    }

    /** Far above what any scenario writes (see readAll). */
    private static final long MAX_READ = 300_000;

    private static <V> Map<TopicPartition, List<ConsumerRecord<String, V>>> readAll(String bootstrap, String topic,
            Class<?> valueDeser, String isolation) {
        Properties p = Util.consumerProps(bootstrap, null, isolation);
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, valueDeser.getName());
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, 5000);
        try (KafkaConsumer<String, V> c = new KafkaConsumer<>(p)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (PartitionInfo pi : c.partitionsFor(topic, Util.OP_TIMEOUT)) {
                tps.add(new TopicPartition(topic, pi.partition()));
            }
            c.assign(tps);
            c.seekToBeginning(tps);
            Map<TopicPartition, Long> end = c.endOffsets(tps, Util.OP_TIMEOUT);
            Map<TopicPartition, List<ConsumerRecord<String, V>>> out = new HashMap<>();
            tps.forEach(tp -> out.put(tp, new ArrayList<>()));
            long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
            while (true) {
                boolean done = true;
                for (TopicPartition tp : tps) {
                    done &= c.position(tp, Util.OP_TIMEOUT) >= end.get(tp);
                }
                if (done) {
                    return out;
                }
                if (System.nanoTime() > deadline) {
                    throw new AssertionError("reading " + topic + " did not reach " + end + " in 30 s");
                }
                // The scenarios write a few thousand records; far more (aborted ones included)
                // means the application reprocessed in a loop. Say so rather than run out of heap.
                long read = out.values().stream().mapToLong(List::size).sum();
                if (read > MAX_READ) {
                    throw new AssertionError("reading " + topic + " (" + isolation + "): more than " + MAX_READ
                            + " records up to " + end + ": the application reprocessed in a loop");
                }
                for (ConsumerRecord<String, V> r : c.poll(Duration.ofMillis(200))) {
                    List<ConsumerRecord<String, V>> got = out.get(new TopicPartition(r.topic(), r.partition()));
                    // One reader from the beginning sees each offset once: an offset again means
                    // the broker sent the consumer back (a reset or a truncation it answered).
                    if (!got.isEmpty() && got.get(got.size() - 1).offset() >= r.offset()) {
                        throw new AssertionError("reading " + topic + "-" + r.partition() + " (" + isolation
                                + "): offset " + r.offset() + " after " + got.get(got.size() - 1).offset()
                                + " (leader epoch " + r.leaderEpoch() + ", previous "
                                + got.get(got.size() - 1).leaderEpoch() + ")");
                    }
                    got.add(r);
                }
            }
        }
    }

    static void verify(String bootstrap, String[] a) {
        String input = a[0];
        String output = a[1];
        Map<String, Long> want = new TreeMap<>();
        Set<String> seqs = new HashSet<>();
        long inputs = 0;
        long dups = 0;
        Map<TopicPartition, List<ConsumerRecord<String, String>>> in = readAll(bootstrap, input, StringDeserializer.class,
                "read_committed");
        for (List<ConsumerRecord<String, String>> l : in.values()) {
            for (ConsumerRecord<String, String> r : l) {
                inputs++;
                String v = r.value();
                int colon = v.indexOf(':');
                want.merge(v.substring(0, Math.max(0, colon)), 1L, Long::sum);
                if (!seqs.add(v)) {
                    dups++;
                }
            }
        }
        Map<TopicPartition, List<ConsumerRecord<String, Long>>> out = readAll(bootstrap, output, LongDeserializer.class,
                "read_committed");
        // Records of aborted transactions (what the kills cut off) show only to read_uncommitted.
        long uncommitted = 0;
        for (List<ConsumerRecord<String, Long>> l : StreamsEos.<Long>readAll(bootstrap, output, LongDeserializer.class,
                "read_uncommitted").values()) {
            uncommitted += l.size();
        }
        Map<String, List<Long>> got = new TreeMap<>();
        long outputs = 0;
        for (List<ConsumerRecord<String, Long>> l : out.values()) {
            for (ConsumerRecord<String, Long> r : l) {
                outputs++;
                got.computeIfAbsent(r.key(), k -> new ArrayList<>()).add(r.value());
            }
        }
        boolean complete = true;
        boolean exact = true;
        List<String> problems = new ArrayList<>();
        Set<String> allKeys = new HashSet<>(want.keySet());
        allKeys.addAll(got.keySet());
        for (String k : new java.util.TreeSet<>(allKeys)) {
            long n = want.getOrDefault(k, 0L);
            List<Long> counts = got.getOrDefault(k, List.of());
            long last = counts.isEmpty() ? 0 : counts.get(counts.size() - 1);
            if (last != n) {
                complete = false;
                if (problems.size() < 10) {
                    problems.add(k + ": last count " + last + ", input " + n);
                }
            }
            for (int i = 0; i < counts.size(); i++) {
                if (counts.get(i) != i + 1) {
                    exact = false;
                    if (problems.size() < 10) {
                        problems.add(k + ": count #" + (i + 1) + " is " + counts.get(i) + " (around: "
                                + counts.subList(Math.max(0, i - 3), Math.min(counts.size(), i + 4)) + ")");
                    }
                    break;
                }
            }
            if (counts.size() > n) {
                exact = false;
            }
        }
        StringBuilder sb = new StringBuilder();
        sb.append("{\"input\":").append(inputs).append(",\"input_dups\":").append(dups)
                .append(",\"keys\":").append(want.size()).append(",\"output\":").append(outputs).append(",\"output_uncommitted\":").append(uncommitted)
                .append(",\"complete\":").append(complete).append(",\"exact\":").append(exact && complete)
                .append(",\"problems\":[");
        for (int i = 0; i < problems.size(); i++) {
            sb.append(i == 0 ? "" : ",").append('"').append(problems.get(i).replace("\"", "'")).append('"');
        }
        sb.append("]}");
        System.out.println("VERIFY " + sb);
    }
}
