package sluice.tests;

import static sluice.tests.Util.check;
import static sluice.tests.Util.checkEq;
import static sluice.tests.Util.info;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.ProducerFencedException;

/**
 * Transactions through the Java client (kafka-clients 4.x). Each scenario makes its own topics
 * (named from the prefix it is given), asserts, prints "CHECK ok: ..." lines, and throws on failure.
 * The client runs the KIP-890 (TV2) flow when the broker finalizes transaction.version >= 2, the
 * older flow otherwise: every scenario holds for both.
 */
final class TxnScenarios {
    private TxnScenarios() {}

    static final String RC = "read_committed";
    static final String RU = "read_uncommitted";
    static final Duration READ = Duration.ofSeconds(30);

    private static List<String> seq(String prefix, int n) {
        List<String> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            out.add(prefix + "-" + i);
        }
        return out;
    }

    private static void sendAll(KafkaProducer<String, String> p, List<TopicPartition> tps, String prefix, int n)
            throws Exception {
        for (TopicPartition tp : tps) {
            for (String v : seq(prefix + "-" + tp, n)) {
                p.send(new ProducerRecord<>(tp.topic(), tp.partition(), "k", v));
            }
        }
        p.flush();
    }

    private static List<String> expected(TopicPartition tp, int n, String... prefixes) {
        List<String> out = new ArrayList<>();
        for (String prefix : prefixes) {
            out.addAll(seq(prefix + "-" + tp, n));
        }
        return out;
    }

    /**
     * Commit and abort across partitions of two topics; read_committed sees only committed data,
     * read_uncommitted sees everything; an open transaction holds read_committed back (LSO) until
     * it commits.
     */
    static void commitAbort(String bootstrap, String prefix) throws Exception {
        String a = prefix + "-a";
        String b = prefix + "-b";
        Util.createTopic(bootstrap, a, 3, null);
        Util.createTopic(bootstrap, b, 1, null);
        List<TopicPartition> tps = new ArrayList<>(Util.partitions(a, 3));
        tps.addAll(Util.partitions(b, 1));
        final int n = 5;
        try (KafkaProducer<String, String> p = Util.txProducer(bootstrap, prefix + "-txn", null)) {
            p.initTransactions();
            p.beginTransaction();
            sendAll(p, tps, "c1", n);
            p.commitTransaction();
            p.beginTransaction();
            sendAll(p, tps, "a2", n);
            p.abortTransaction();
            p.beginTransaction();
            sendAll(p, tps, "c3", n);
            p.commitTransaction();
            // An open transaction, flushed to the log but not ended.
            p.beginTransaction();
            sendAll(p, tps, "o4", n);

            Map<TopicPartition, List<String>> rc = Util.values(Util.readAll(bootstrap, tps, RC, READ));
            Map<TopicPartition, List<String>> ru = Util.values(Util.readAll(bootstrap, tps, RU, READ));
            for (TopicPartition tp : tps) {
                checkEq(expected(tp, n, "c1", "c3"), rc.get(tp), "read_committed " + tp + ": committed only");
                checkEq(expected(tp, n, "c1", "a2", "c3", "o4"), ru.get(tp),
                        "read_uncommitted " + tp + ": committed, aborted and open");
            }
            Map<TopicPartition, Long> lso = Util.endOffsets(bootstrap, tps, RC);
            Map<TopicPartition, Long> hw = Util.endOffsets(bootstrap, tps, RU);
            for (TopicPartition tp : tps) {
                check(lso.get(tp) < hw.get(tp), "open transaction: last stable offset " + lso.get(tp)
                        + " < high watermark " + hw.get(tp) + " on " + tp);
            }
            p.commitTransaction();
        }
        Util.awaitStable(bootstrap, tps);
        Map<TopicPartition, List<ConsumerRecord<String, String>>> after = Util.readAll(bootstrap, tps, RC, READ);
        Map<TopicPartition, Long> lso = Util.endOffsets(bootstrap, tps, RC);
        Map<TopicPartition, Long> hw = Util.endOffsets(bootstrap, tps, RU);
        for (TopicPartition tp : tps) {
            checkEq(expected(tp, n, "c1", "c3", "o4"), Util.values(after).get(tp),
                    "read_committed " + tp + " after the last commit");
            checkEq(hw.get(tp), lso.get(tp), "no open transaction: LSO = high watermark on " + tp);
            // 4 transactions of n records, each ended by one control record (marker).
            checkEq((long) 4 * (n + 1), hw.get(tp), "high watermark counts the records and one marker per txn on " + tp);
            List<ConsumerRecord<String, String>> recs = after.get(tp);
            long c3first = recs.get(n).offset();
            checkEq((long) 2 * (n + 1) + 0, c3first, "the aborted batch and its marker are skipped on " + tp);
        }
    }

    /**
     * A second producer with the same transactional.id fences the first: the first one's open
     * transaction is aborted, its commit fails with ProducerFencedException; a send of the fenced
     * producer fails too (Kafka answers a produce with the old epoch with INVALID_PRODUCER_EPOCH,
     * InvalidProducerEpochException: KIP-588), and its transaction can then only fail.
     */
    static void fencing(String bootstrap, String prefix) throws Exception {
        String t = prefix + "-t";
        Util.createTopic(bootstrap, t, 2, null);
        List<TopicPartition> tps = Util.partitions(t, 2);
        // 1. The fenced producer commits: EndTxn with the old epoch -> ProducerFencedException.
        String tid = prefix + "-txn";
        try (KafkaProducer<String, String> first = Util.txProducer(bootstrap, tid, null)) {
            first.initTransactions();
            first.beginTransaction();
            first.send(new ProducerRecord<>(t, 0, "k", "first-0")).get(30, TimeUnit.SECONDS);
            try (KafkaProducer<String, String> second = Util.txProducer(bootstrap, tid, null)) {
                second.initTransactions();
                second.beginTransaction();
                second.send(new ProducerRecord<>(t, 1, "k", "second-0"));
                second.send(new ProducerRecord<>(t, 0, "k", "second-1"));
                second.commitTransaction();
                Throwable fenced = null;
                try {
                    first.commitTransaction();
                } catch (Exception e) {
                    fenced = e;
                }
                check(fenced != null, "the fenced producer cannot commit");
                info("fenced producer's commit: " + Util.causes(fenced));
                check(Util.hasCause(fenced, ProducerFencedException.class),
                        "the fenced producer's commit fails with ProducerFencedException (got " + Util.causes(fenced) + ")");
                // The new producer goes on.
                second.beginTransaction();
                second.send(new ProducerRecord<>(t, 1, "k", "second-2"));
                second.commitTransaction();
            }
        }
        // 2. The fenced producer sends: the send fails, and so does ending the transaction.
        String tid2 = prefix + "-txn2";
        try (KafkaProducer<String, String> first = Util.txProducer(bootstrap, tid2, null)) {
            first.initTransactions();
            first.beginTransaction();
            first.send(new ProducerRecord<>(t, 0, "k", "first2-0")).get(30, TimeUnit.SECONDS);
            try (KafkaProducer<String, String> second = Util.txProducer(bootstrap, tid2, null)) {
                second.initTransactions();
                Throwable sendErr = null;
                try {
                    first.send(new ProducerRecord<>(t, 0, "k", "first2-1")).get(30, TimeUnit.SECONDS);
                } catch (Exception e) {
                    sendErr = e;
                }
                check(sendErr != null, "the fenced producer's send fails");
                info("fenced producer's send: " + Util.causes(sendErr));
                check(Util.hasCause(sendErr, ProducerFencedException.class)
                        || Util.hasCause(sendErr, org.apache.kafka.common.errors.InvalidProducerEpochException.class),
                        "the fenced producer's send fails with ProducerFenced or InvalidProducerEpoch (got "
                        + Util.causes(sendErr) + ")");
                Throwable commitErr = null;
                try {
                    first.commitTransaction();
                } catch (Exception e) {
                    commitErr = e;
                }
                check(commitErr != null, "the fenced producer cannot commit after the failed send");
                info("fenced producer's commit after the failed send: " + Util.causes(commitErr));
                second.beginTransaction();
                second.send(new ProducerRecord<>(t, 0, "k", "second2-0"));
                second.commitTransaction();
            }
        }
        Util.awaitStable(bootstrap, tps);
        Map<TopicPartition, List<String>> rc = Util.values(Util.readAll(bootstrap, tps, RC, READ));
        checkEq(List.of("second-1", "second2-0"), rc.get(tps.get(0)), "read_committed p0: only the new producers' records");
        checkEq(List.of("second-0", "second-2"), rc.get(tps.get(1)), "read_committed p1: the new producer's records");
        Map<TopicPartition, List<String>> ru = Util.values(Util.readAll(bootstrap, tps, RU, READ));
        check(ru.get(tps.get(0)).containsAll(List.of("first-0", "first2-0")),
                "read_uncommitted p0 still shows the aborted records first-0, first2-0");
        check(!ru.get(tps.get(0)).contains("first2-1"), "the fenced producer's send was not written");
    }

    /**
     * Consume-transform-produce: offsets sent with sendOffsetsToTransaction(offsets,
     * consumer.groupMetadata()) are committed with the transaction: invisible while it is open,
     * dropped when it aborts, visible when it commits; the output holds every input record once.
     * groupProtocol: "classic" (JoinGroup/SyncGroup: generation id) or "consumer" (KIP-848: the
     * member epoch stands in for the generation in TxnOffsetCommit).
     */
    static void sendOffsets(String bootstrap, String prefix, String groupProtocol) throws Exception {
        String in = prefix + "-in";
        String out = prefix + "-out";
        String group = prefix + "-g";
        Util.createTopic(bootstrap, in, 2, null);
        Util.createTopic(bootstrap, out, 2, null);
        List<TopicPartition> inTps = Util.partitions(in, 2);
        List<TopicPartition> outTps = Util.partitions(out, 2);
        final int total = 40;
        try (KafkaProducer<String, String> p = Util.producer(bootstrap)) {
            for (int i = 0; i < total; i++) {
                p.send(new ProducerRecord<>(in, i % 2, "k" + i, "v" + i));
            }
            p.flush();
        }
        java.util.Properties cp = Util.consumerProps(bootstrap, group, RC);
        cp.put("max.poll.records", 7);
        cp.put("group.protocol", groupProtocol);
        try (Admin admin = Util.admin(bootstrap);
             KafkaConsumer<String, String> c = new KafkaConsumer<>(cp);
             KafkaProducer<String, String> p = Util.txProducer(bootstrap, prefix + "-txn", null)) {
            p.initTransactions();
            c.subscribe(List.of(in));
            int round = 0;
            int done = 0;
            long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
            Map<TopicPartition, OffsetAndMetadata> lastCommitted = new HashMap<>();
            while (done < total) {
                check(System.nanoTime() < deadline, "round " + round + ": consumed within 60 s (" + done + "/" + total + ")");
                ConsumerRecords<String, String> recs = c.poll(Duration.ofMillis(500));
                if (recs.isEmpty()) {
                    continue;
                }
                round++;
                Map<TopicPartition, OffsetAndMetadata> next = new HashMap<>();
                p.beginTransaction();
                for (ConsumerRecord<String, String> r : recs) {
                    p.send(new ProducerRecord<>(out, r.partition(), r.key(), r.value().toUpperCase()));
                    next.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                }
                p.sendOffsetsToTransaction(next, c.groupMetadata());
                p.flush();
                Map<TopicPartition, OffsetAndMetadata> seen = committed(admin, group);
                checkEq(lastCommitted, seen, "round " + round + ": offsets of the open transaction are not visible");
                if (round == 2) {
                    // Abort this one: its output and its offsets are dropped; rewind and redo.
                    p.abortTransaction();
                    checkEq(lastCommitted, committed(admin, group), "round 2: aborted offsets are dropped");
                    for (TopicPartition tp : recs.partitions()) {
                        OffsetAndMetadata o = lastCommitted.get(tp);
                        c.seek(tp, o == null ? 0 : o.offset());
                    }
                    continue;
                }
                p.commitTransaction();
                lastCommitted.putAll(next);
                Map<TopicPartition, OffsetAndMetadata> want = new HashMap<>(lastCommitted);
                Util.await("round " + round + ": offsets visible after commit", Duration.ofSeconds(30),
                        () -> committed(admin, group), want::equals);
                done += recs.count();
            }
            check(round >= 4, "several transactions ran (" + round + ")");
        }
        Util.awaitStable(bootstrap, outTps);
        Map<TopicPartition, List<String>> o = Util.values(Util.readAll(bootstrap, outTps, RC, READ));
        Set<String> got = new TreeSet<>();
        int count = 0;
        for (TopicPartition tp : outTps) {
            got.addAll(o.get(tp));
            count += o.get(tp).size();
        }
        Set<String> want = new TreeSet<>();
        for (int i = 0; i < total; i++) {
            want.add("V" + i);
        }
        checkEq(want, got, "output holds every input record");
        checkEq(total, count, "output holds every input record exactly once");
        Map<TopicPartition, Long> end = Util.endOffsets(bootstrap, inTps, RU);
        try (Admin admin = Util.admin(bootstrap)) {
            Map<TopicPartition, OffsetAndMetadata> cm = committed(admin, group);
            for (TopicPartition tp : inTps) {
                checkEq(end.get(tp), cm.get(tp) == null ? null : cm.get(tp).offset(),
                        "group's committed offset is the end of " + tp);
            }
        }
        // A new member of the group resumes from the committed offsets: nothing left to read.
        java.util.Properties cp2 = Util.consumerProps(bootstrap, group, RC);
        cp2.put("group.protocol", groupProtocol);
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(cp2)) {
            c.subscribe(List.of(in));
            int extra = 0;
            long until = System.nanoTime() + Duration.ofSeconds(5).toNanos();
            while (System.nanoTime() < until) {
                extra += c.poll(Duration.ofMillis(300)).count();
            }
            checkEq(0, extra, "a restarted group member reads nothing already processed");
        }
    }

    private static Map<TopicPartition, OffsetAndMetadata> committed(Admin admin, String group) throws Exception {
        Map<TopicPartition, OffsetAndMetadata> m = admin.listConsumerGroupOffsets(group)
                .partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS);
        Map<TopicPartition, OffsetAndMetadata> out = new HashMap<>();
        m.forEach((tp, o) -> {
            if (o != null && o.offset() >= 0) {
                out.put(tp, new OffsetAndMetadata(o.offset()));
            }
        });
        return out;
    }

    /**
     * A transaction left open past transaction.timeout.ms is aborted by the coordinator: the LSO
     * moves past it, read_committed never shows it, the old producer can no longer commit, and a new
     * producer with the same transactional.id works.
     */
    static void timeout(String bootstrap, String prefix) throws Exception {
        String t = prefix + "-t";
        Util.createTopic(bootstrap, t, 1, null);
        List<TopicPartition> tps = Util.partitions(t, 1);
        TopicPartition tp = tps.get(0);
        String tid = prefix + "-txn";
        try (KafkaProducer<String, String> p = Util.txProducer(bootstrap, tid,
                Map.of(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, 2000))) {
            p.initTransactions();
            p.beginTransaction();
            long off = p.send(new ProducerRecord<>(t, 0, "k", "timed-out")).get(30, TimeUnit.SECONDS).offset();
            check(Util.endOffsets(bootstrap, tps, RC).get(tp) <= off, "the open transaction holds the LSO at or below " + off);
            long start = System.nanoTime();
            long lso = -1;
            while (System.nanoTime() - start < Duration.ofSeconds(60).toNanos()) {
                lso = Util.endOffsets(bootstrap, tps, RC).get(tp);
                if (lso > off) {
                    break;
                }
                Thread.sleep(200);
            }
            check(lso > off, "the coordinator aborted the timed-out transaction within 60 s (LSO " + lso + " > " + off + ")");
            info("timed-out transaction aborted after " + (System.nanoTime() - start) / 1_000_000 + " ms");
            checkEq(List.of(), Util.values(Util.readAll(bootstrap, tps, RC, READ)).get(tp),
                    "read_committed never shows the timed-out transaction's record");
            Throwable err = null;
            try {
                p.commitTransaction();
            } catch (Exception e) {
                err = e;
            }
            check(err != null, "the timed-out producer cannot commit");
            info("commit after the timeout abort failed with " + Util.causes(err));
        }
        try (KafkaProducer<String, String> p = Util.txProducer(bootstrap, tid, null)) {
            p.initTransactions();
            p.beginTransaction();
            p.send(new ProducerRecord<>(t, 0, "k", "after"));
            p.commitTransaction();
        }
        Util.awaitStable(bootstrap, tps);
        checkEq(List.of("after"), Util.values(Util.readAll(bootstrap, tps, RC, READ)).get(tp),
                "a new producer with the same transactional.id commits");
        checkEq(List.of("timed-out", "after"), Util.values(Util.readAll(bootstrap, tps, RU, READ)).get(tp),
                "read_uncommitted shows both");
    }
}
