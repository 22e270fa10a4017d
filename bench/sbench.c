/*
 * sbench: tiny librdkafka client for the Sluice benchmark harness.
 *
 *   sbench produce <brokers> <topic> <size> <count> <acks> <rate|0> [k=v ...]
 *   sbench consume <brokers> <topic> <count> [k=v ...]
 *   sbench share   <brokers> <topic> <count> <group> <workers> [k=v | g:k=v ...]
 *   sbench join    <brokers> <topic> <group> <classic|consumer> [k=v ...]
 *   sbench create  <brokers> <topic> <partitions> [config=value ...]
 *   sbench delete  <brokers> <topic>
 *   sbench probe   <brokers> <topic>
 *   sbench meta    <brokers> [<topic>]
 *
 * produce: sends <count> messages of <size> bytes (null key, so librdkafka
 *   spreads them over all partitions), flat out (rate 0) or paced at <rate>
 *   msg/s, stopping early after $SBENCH_SECONDS seconds if that is set, records each message's delivery latency (produce() call -> delivery
 *   report) and prints one JSON line: msgs/s, MB/s, p50/p99/p999/max in ms.
 *   $SBENCH_WARMUP_S=W: records produced in the first W seconds count as
 *   delivered but are left out of the latency percentiles (the producer's
 *   start: connections, InitProducerId).
 *   $SBENCH_DR_LOG=<file>: also write one line per delivery report to <file>
 *   (line-buffered, so it can be followed while running): "<produce ns>
 *   <delivery ns> <error name or OK>", times from CLOCK_MONOTONIC (the clock of
 *   Python's time.monotonic_ns()), for the failover cell of bench/replication.
 *   ($SBENCH_TXN_SIZE and $SBENCH_KEYS: see produce() below.)
 * consume: reads <count> messages from the beginning of every partition
 *   (assign(), no group) and prints msgs/s and MB/s as JSON. With
 *   $SBENCH_GROUP set it is a consumer group instead: subscribe() with that
 *   group id (group.protocol=consumer, i.e. KIP-848, auto commit on), timed
 *   from subscribe().
 * share: <workers> threads, each its own share consumer (KIP-932,
 *   share.acknowledgement.mode=explicit) in share group <group>, read the
 *   topic from the start (the group config share.auto.offset.reset=earliest
 *   is set first with IncrementalAlterConfigs, plus any g:k=v group configs),
 *   ACCEPT every record and commit after each poll batch, until <count>
 *   distinct records (<count> 0: all of them) have been acknowledged
 *   successfully. Counts records delivered more than once. Acknowledgement
 *   latency per commit and partition: $SBENCH_SHARE_COMMIT=async (default)
 *   from commit_async() to the acknowledgement-commit callback (served on the
 *   worker's thread, inside its next share_poll(), polled every
 *   $SBENCH_SHARE_POLL_MS=1 ms), or =sync the duration of commit_sync().
 *   Timed from the first subscribe() to the last acknowledgement.
 * join: subscribes with a new group id and times the first assignment; then
 *   changes its subscription (a rejoin of a member of a stable group) and
 *   times the new assignment; then closes and a second consumer joins the now
 *   empty group (a restart). Prints JSON.
 * create: CreateTopics with the admin API (an existing topic is fine);
 *   $SBENCH_RF sets the replication factor (default 1); $SBENCH_ASSIGN=2,3,1
 *   gives every partition those replicas instead (the first: preferred leader).
 * delete: DeleteTopics (a missing topic is fine), so a long run does not fill the disk.
 * meta: Metadata; prints the brokers and each partition's leader, replicas
 *   and ISR of <topic> (or of every topic) as JSON.
 * probe: Metadata, then fetch the last record of partition 0; prints ms.
 * Extra k=v pairs are passed to librdkafka's configuration.
 */
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void die(const char *m) {
        fprintf(stderr, "sbench: %s\n", m);
        exit(1);
}

static void set(rd_kafka_conf_t *c, const char *k, const char *v) {
        char err[512];
        if (rd_kafka_conf_set(c, k, v, err, sizeof err) != RD_KAFKA_CONF_OK) {
                fprintf(stderr, "sbench: %s=%s: %s\n", k, v, err);
                exit(1);
        }
}

static void extra(rd_kafka_conf_t *c, int argc, char **argv, int from) {
        for (int i = from; i < argc; i++) {
                char *eq = strchr(argv[i], '=');
                if (!eq) die("extra args must be k=v");
                *eq = 0;
                set(c, argv[i], eq + 1);
                *eq = '=';
        }
}

/* Latency histogram: 1 us buckets below 100 ms, then 1 ms buckets to 100 s. */
#define FINE 100000
#define COARSE 100000
static uint64_t hist[FINE + COARSE + 1];
static uint64_t delivered, failed, lat_max_us;
static rd_kafka_resp_err_t first_err;
static FILE *dr_log; /* $SBENCH_DR_LOG */
static uint64_t warm_until_ns; /* $SBENCH_WARMUP_S: records produced before this are not timed */

static void record_us(uint64_t us) {
        if (us > lat_max_us) lat_max_us = us;
        if (us < FINE) hist[us]++;
        else if (us / 1000 < COARSE + 100) {
                uint64_t b = FINE + (us - FINE) / 1000;
                hist[b > FINE + COARSE ? FINE + COARSE : b]++;
        } else hist[FINE + COARSE]++;
}

static double pct_ms(double p) {
        uint64_t total = 0, acc = 0;
        for (size_t i = 0; i <= FINE + COARSE; i++) total += hist[i];
        if (!total) return -1;
        uint64_t want = (uint64_t)(p * (double)total);
        if (want >= total) want = total - 1;
        for (size_t i = 0; i <= FINE + COARSE; i++) {
                acc += hist[i];
                if (acc > want) {
                        if (i < FINE) return (double)i / 1000.0;
                        return (double)(FINE + (i - FINE) * 1000) / 1000.0;
                }
        }
        return -1;
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
        (void)rk;
        (void)opaque;
        uint64_t sent = (uint64_t)(uintptr_t)m->_private;
        if (dr_log)
                fprintf(dr_log, "%llu %llu %s\n", (unsigned long long)sent,
                        (unsigned long long)now_ns(), m->err ? rd_kafka_err2name(m->err) : "OK");
        if (m->err) {
                if (!failed) first_err = m->err;
                failed++;
                return;
        }
        if (sent >= warm_until_ns) record_us((now_ns() - sent) / 1000);
        delivered++;
}

static int produce(int argc, char **argv) {
        if (argc < 8) die("produce <brokers> <topic> <size> <count> <acks> <rate>");
        const char *brokers = argv[2], *topic = argv[3];
        size_t size = strtoull(argv[4], 0, 10);
        uint64_t count = strtoull(argv[5], 0, 10);
        const char *acks = argv[6];
        double rate = atof(argv[7]);
        char err[512];
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        set(c, "bootstrap.servers", brokers);
        set(c, "acks", acks);
        set(c, "queue.buffering.max.messages", "1000000");
        set(c, "queue.buffering.max.kbytes", "1048576");
        extra(c, argc, argv, 8);
        rd_kafka_conf_set_dr_msg_cb(c, dr_cb);
        if (getenv("SBENCH_DR_LOG")) {
                if (!(dr_log = fopen(getenv("SBENCH_DR_LOG"), "w"))) die("SBENCH_DR_LOG: fopen");
                setvbuf(dr_log, NULL, _IOLBF, 0);
        }
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof err);
        if (!rk) die(err);
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        char *payload = malloc(size ? size : 1);
        for (size_t i = 0; i < size; i++) payload[i] = 'a' + (i % 26);
        /* Wait for metadata so the first messages do not carry connect time. */
        const rd_kafka_metadata_t *md;
        if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR)
                die("metadata");
        int parts = md->topic_cnt ? md->topics[0].partition_cnt : -1;
        rd_kafka_metadata_destroy(md);

        const char *dur = getenv("SBENCH_SECONDS");
        uint64_t limit_ns = dur ? (uint64_t)(atof(dur) * 1e9) : UINT64_MAX;
        /* SBENCH_TXN_SIZE=N (with transactional.id=... among the k=v settings): every N
         * messages form one transaction; the commit waits for their delivery. */
        /* SBENCH_KEYS=N: record i gets key i % N (compacted topics need keys). */
        const char *keys_env = getenv("SBENCH_KEYS");
        uint64_t keys = keys_env ? strtoull(keys_env, 0, 10) : 0;
        const char *txn_env = getenv("SBENCH_TXN_SIZE");
        uint64_t txn_size = txn_env ? strtoull(txn_env, 0, 10) : 0, txns = 0;
        rd_kafka_error_t *terr;
        if (txn_size) {
                if ((terr = rd_kafka_init_transactions(rk, 30000)))
                        die(rd_kafka_error_string(terr));
                if ((terr = rd_kafka_begin_transaction(rk))) die(rd_kafka_error_string(terr));
        }
        uint64_t t0 = now_ns(), sent_n = 0;
        if (getenv("SBENCH_WARMUP_S")) warm_until_ns = t0 + (uint64_t)(atof(getenv("SBENCH_WARMUP_S")) * 1e9);
        for (uint64_t i = 0; i < count; i++, sent_n++) {
                if (txn_size && i && i % txn_size == 0) {
                        if ((terr = rd_kafka_commit_transaction(rk, 60000)))
                                die(rd_kafka_error_string(terr));
                        txns++;
                        if ((terr = rd_kafka_begin_transaction(rk)))
                                die(rd_kafka_error_string(terr));
                }
                if ((i & 1023) == 0 && now_ns() - t0 > limit_ns) break;
                if (rate > 0) {
                        uint64_t due = t0 + (uint64_t)((double)i * 1e9 / rate);
                        uint64_t n;
                        while ((n = now_ns()) < due) {
                                rd_kafka_poll(rk, 0);
                                if (due - n > 200000) usleep((due - n) / 1000 - 100);
                        }
                }
                uint64_t ts = now_ns();
                char key[24];
                size_t key_len = 0;
                if (keys) key_len = (size_t)snprintf(key, sizeof key, "k%010llu",
                                                     (unsigned long long)(i % keys));
                while (rd_kafka_produce(rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY,
                                        payload, size, keys ? key : NULL, key_len,
                                        (void *)(uintptr_t)ts) == -1) {
                        if (rd_kafka_last_error() != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                                die(rd_kafka_err2str(rd_kafka_last_error()));
                        rd_kafka_poll(rk, 1);
                        ts = now_ns();
                }
                if ((i & 1023) == 0) rd_kafka_poll(rk, 0);
        }
        if (txn_size) {
                if ((terr = rd_kafka_commit_transaction(rk, 60000)))
                        die(rd_kafka_error_string(terr));
                txns++;
        }
        uint64_t tp = now_ns();
        while (rd_kafka_outq_len(rk) > 0 && now_ns() - tp < 60ull * 1000000000ull)
                rd_kafka_poll(rk, 10);
        uint64_t t1 = now_ns();
        double secs = (double)(t1 - t0) / 1e9;
        printf("{\"mode\":\"produce\",\"topic\":\"%s\",\"partitions\":%d,\"size\":%zu,"
               "\"acks\":\"%s\",\"rate\":%.0f,\"count\":%llu,\"delivered\":%llu,"
               "\"failed\":%llu,\"first_error\":\"%s\",\"seconds\":%.3f,"
               "\"msgs_per_s\":%.0f,\"mb_per_s\":%.2f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,"
               "\"p999_ms\":%.3f,\"max_ms\":%.3f,\"transactions\":%llu}\n",
               topic, parts, size, acks, rate, (unsigned long long)sent_n,
               (unsigned long long)delivered, (unsigned long long)failed,
               failed ? rd_kafka_err2name(first_err) : "", secs,
               (double)delivered / secs, (double)delivered * size / secs / 1e6,
               pct_ms(0.50), pct_ms(0.99), pct_ms(0.999), lat_max_us / 1000.0,
               (unsigned long long)txns);
        rd_kafka_topic_destroy(rkt);
        rd_kafka_destroy(rk);
        free(payload);
        if (dr_log) fclose(dr_log);
        return failed ? 2 : 0;
}

static int consume(int argc, char **argv) {
        if (argc < 5) die("consume <brokers> <topic> <count>");
        const char *brokers = argv[2], *topic = argv[3];
        uint64_t count = strtoull(argv[4], 0, 10);
        char err[512];
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        const char *group = getenv("SBENCH_GROUP");
        set(c, "bootstrap.servers", brokers);
        set(c, "group.id", group ? group : "sbench-assign");
        if (group) set(c, "group.protocol", "consumer");
        set(c, "enable.auto.commit", group ? "true" : "false");
        set(c, "auto.offset.reset", "earliest");
        set(c, "enable.partition.eof", "false");
        extra(c, argc, argv, 5);
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof err);
        if (!rk) die(err);
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        const rd_kafka_metadata_t *md;
        if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR)
                die("metadata");
        int parts = md->topics[0].partition_cnt;
        rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(parts);
        uint64_t t0 = now_ns();
        if (group) {
                rd_kafka_topic_partition_list_add(l, topic, RD_KAFKA_PARTITION_UA);
                if (rd_kafka_subscribe(rk, l)) die("subscribe");
                rd_kafka_poll_set_consumer(rk);
        } else {
                for (int p = 0; p < parts; p++)
                        rd_kafka_topic_partition_list_add(l, topic, p)->offset =
                            RD_KAFKA_OFFSET_BEGINNING;
                if (rd_kafka_assign(rk, l)) die("assign");
        }
        rd_kafka_topic_partition_list_destroy(l);
        rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(rk);
        rd_kafka_message_t *msgs[10000];
        uint64_t got = 0, bytes = 0, errs = 0, tfirst = 0, tlast = t0;
        while (got < count) {
                ssize_t n = rd_kafka_consume_batch_queue(q, 1000, msgs, 10000);
                if (n <= 0) {
                        if (now_ns() - tlast > 10ull * 1000000000ull) break; /* stalled */
                        continue;
                }
                for (ssize_t i = 0; i < n; i++) {
                        if (msgs[i]->err) errs++;
                        else {
                                got++;
                                bytes += msgs[i]->len;
                        }
                        rd_kafka_message_destroy(msgs[i]);
                }
                tlast = now_ns();
                if (!tfirst) tfirst = tlast;
        }
        double secs = (double)(tlast - t0) / 1e9;
        printf("{\"mode\":\"%s\",\"topic\":\"%s\",\"partitions\":%d,\"count\":%llu,"
               "\"received\":%llu,\"errors\":%llu,\"seconds\":%.3f,\"first_msg_ms\":%.1f,"
               "\"msgs_per_s\":%.0f,\"mb_per_s\":%.2f}\n",
               group ? "group" : "consume", topic, parts, (unsigned long long)count,
               (unsigned long long)got,
               (unsigned long long)errs, secs, tfirst ? (tfirst - t0) / 1e6 : -1.0,
               got / secs, bytes / secs / 1e6);
        rd_kafka_queue_destroy(q);
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        return got < count ? 2 : 0;
}

/* ---------------------------------------------------------------- share */

/* Every record of the topic has an index: base[p] + offset - lo[p]. */
static struct {
        const char *brokers, *topic, *group;
        int parts, sync, poll_ms, argc;
        char **argv;
        int64_t *lo, *hi, *base;
        uint64_t total, want;
        uint8_t *seen, *acked; /* deliveries / successful acks per record */
        uint64_t *commit_ts;   /* when the record's acknowledgement was committed */
        uint64_t delivered, dups, bytes, acked_n, ack_dups, ack_failed, rec_errs, poll_errs,
            commits, out_of_range, t0, t_first, t_end;
        int done;
        rd_kafka_resp_err_t first_ack_err;
        char first_poll_err[256];
        pthread_mutex_t lock; /* histogram, first errors */
} sh;

static int64_t share_index(int32_t p, int64_t off) {
        if (p < 0 || p >= sh.parts || off < sh.lo[p] || off >= sh.hi[p]) return -1;
        return sh.base[p] + off - sh.lo[p];
}

static void share_latency(uint64_t ns) {
        pthread_mutex_lock(&sh.lock);
        record_us(ns / 1000);
        pthread_mutex_unlock(&sh.lock);
}

static void share_ack_failed(rd_kafka_resp_err_t e, uint64_t n) {
        pthread_mutex_lock(&sh.lock);
        if (!sh.ack_failed) sh.first_ack_err = e;
        sh.ack_failed += n;
        pthread_mutex_unlock(&sh.lock);
}

/* Records acknowledged successfully: count each once; the run ends at want. */
static void share_acked(int32_t p, const int64_t *offs, size_t cnt, uint64_t now) {
        uint64_t fresh = 0;
        for (size_t i = 0; i < cnt; i++) {
                int64_t ix = share_index(p, offs[i]);
                if (ix < 0) {
                        __atomic_add_fetch(&sh.out_of_range, 1, __ATOMIC_RELAXED);
                        continue;
                }
                if (__atomic_fetch_add(&sh.acked[ix], 1, __ATOMIC_RELAXED))
                        __atomic_add_fetch(&sh.ack_dups, 1, __ATOMIC_RELAXED);
                else fresh++;
        }
        uint64_t before = __atomic_fetch_add(&sh.acked_n, fresh, __ATOMIC_RELAXED);
        if (before < sh.want && before + fresh >= sh.want) {
                sh.t_end = now;
                __atomic_store_n(&sh.done, 1, __ATOMIC_RELEASE);
        }
}

static void share_commit_cb(rd_kafka_share_t *rks, rd_kafka_share_partition_offsets_list_t *l,
                            rd_kafka_resp_err_t err, void *opaque) {
        (void)rks;
        (void)opaque;
        uint64_t now = now_ns();
        size_t n = rd_kafka_share_partition_offsets_list_count(l);
        for (size_t i = 0; i < n; i++) {
                const rd_kafka_share_partition_offsets_t *e = rd_kafka_share_partition_offsets_list_get(l, i);
                const rd_kafka_topic_partition_t *tp = rd_kafka_share_partition_offsets_partition(e);
                const int64_t *offs = rd_kafka_share_partition_offsets_offsets(e);
                size_t cnt = rd_kafka_share_partition_offsets_offsets_cnt(e);
                rd_kafka_resp_err_t pe = tp->err ? tp->err : err;
                if (!cnt) continue;
                if (pe) {
                        share_ack_failed(pe, cnt);
                        continue;
                }
                int64_t ix = share_index(tp->partition, offs[0]);
                if (ix >= 0) share_latency(now - sh.commit_ts[ix]);
                share_acked(tp->partition, offs, cnt, now);
        }
}

static void *share_worker(void *arg) {
        int id = (int)(intptr_t)arg;
        char err[512], cid[64];
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        set(c, "bootstrap.servers", sh.brokers);
        set(c, "group.id", sh.group);
        snprintf(cid, sizeof cid, "sbench-share-%d", id);
        set(c, "client.id", cid);
        set(c, "share.acknowledgement.mode", "explicit");
        for (int i = 7; i < sh.argc; i++) { /* k=v client settings (copies: threads share argv) */
                if (!strncmp(sh.argv[i], "g:", 2)) continue;
                char *k = strdup(sh.argv[i]), *eq = strchr(k, '=');
                if (!eq) die("extra args must be k=v");
                *eq = 0;
                set(c, k, eq + 1);
                free(k);
        }
        rd_kafka_share_t *rks = rd_kafka_share_consumer_new(c, err, sizeof err);
        if (!rks) die(err);
        rd_kafka_error_t *e;
        if (!sh.sync && (e = rd_kafka_share_set_acknowledgement_commit_cb(rks, share_commit_cb, NULL)))
                die(rd_kafka_error_string(e));
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, sh.topic, RD_KAFKA_PARTITION_UA);
        if (rd_kafka_share_subscribe(rks, l)) die("share_subscribe");
        rd_kafka_topic_partition_list_destroy(l);
        int32_t *pcnt = calloc(sh.parts, sizeof *pcnt);
        while (!__atomic_load_n(&sh.done, __ATOMIC_ACQUIRE)) {
                rd_kafka_messages_t *b = NULL;
                if ((e = rd_kafka_share_poll(rks, sh.poll_ms, &b))) {
                        pthread_mutex_lock(&sh.lock);
                        if (!sh.poll_errs++)
                                snprintf(sh.first_poll_err, sizeof sh.first_poll_err, "%s",
                                         rd_kafka_error_string(e));
                        pthread_mutex_unlock(&sh.lock);
                        int fatal = rd_kafka_error_is_fatal(e);
                        rd_kafka_error_destroy(e);
                        if (fatal) break;
                        usleep(10000);
                        continue;
                }
                size_t n = rd_kafka_messages_count(b);
                if (!n) continue;
                uint64_t got = 0, bytes = 0;
                for (size_t i = 0; i < n; i++) {
                        rd_kafka_message_t *m = rd_kafka_messages_get(b, i);
                        if (m->err) {
                                __atomic_add_fetch(&sh.rec_errs, 1, __ATOMIC_RELAXED);
                                continue; /* librdkafka acknowledges these itself */
                        }
                        int64_t ix = share_index(m->partition, m->offset);
                        if (ix < 0) __atomic_add_fetch(&sh.out_of_range, 1, __ATOMIC_RELAXED);
                        else if (__atomic_fetch_add(&sh.seen[ix], 1, __ATOMIC_RELAXED))
                                __atomic_add_fetch(&sh.dups, 1, __ATOMIC_RELAXED);
                        got++;
                        bytes += m->len;
                        if (rd_kafka_share_acknowledge_type(rks, m, RD_KAFKA_SHARE_ACKNOWLEDGE_TYPE_ACCEPT))
                                die("share_acknowledge_type");
                }
                uint64_t tc = now_ns();
                if (got && !__atomic_load_n(&sh.t_first, __ATOMIC_RELAXED))
                        __atomic_compare_exchange_n(&sh.t_first, &(uint64_t){0}, tc, 0, __ATOMIC_RELAXED,
                                                    __ATOMIC_RELAXED);
                __atomic_add_fetch(&sh.delivered, got, __ATOMIC_RELAXED);
                __atomic_add_fetch(&sh.bytes, bytes, __ATOMIC_RELAXED);
                __atomic_add_fetch(&sh.commits, 1, __ATOMIC_RELAXED);
                if (!sh.sync) {
                        for (size_t i = 0; i < n; i++) {
                                rd_kafka_message_t *m = rd_kafka_messages_get(b, i);
                                int64_t ix = share_index(m->partition, m->offset);
                                if (!m->err && ix >= 0) sh.commit_ts[ix] = tc;
                        }
                        rd_kafka_messages_destroy(b);
                        if ((e = rd_kafka_share_commit_async(rks))) die(rd_kafka_error_string(e));
                        continue;
                }
                /* commit_sync: one latency sample per commit; per-partition outcome */
                rd_kafka_topic_partition_list_t *res = NULL;
                e = rd_kafka_share_commit_sync(rks, 30000, &res);
                uint64_t now = now_ns();
                if (e) die(rd_kafka_error_string(e));
                share_latency(now - tc);
                memset(pcnt, 0, sh.parts * sizeof *pcnt);
                for (int i = 0; res && i < res->cnt; i++)
                        if (res->elems[i].err && res->elems[i].partition >= 0 &&
                            res->elems[i].partition < sh.parts)
                                pcnt[res->elems[i].partition] = -1; /* failed */
                uint64_t failed = 0;
                rd_kafka_resp_err_t ferr = 0;
                for (size_t i = 0; i < n; i++) {
                        rd_kafka_message_t *m = rd_kafka_messages_get(b, i);
                        if (m->err) continue;
                        if (m->partition >= 0 && m->partition < sh.parts && pcnt[m->partition] < 0) {
                                failed++;
                                continue;
                        }
                        share_acked(m->partition, &m->offset, 1, now);
                }
                for (int i = 0; failed && res && i < res->cnt; i++)
                        if (res->elems[i].err) ferr = res->elems[i].err;
                if (failed) share_ack_failed(ferr, failed);
                if (res) rd_kafka_topic_partition_list_destroy(res);
                rd_kafka_messages_destroy(b);
        }
        free(pcnt);
        if ((e = rd_kafka_share_consumer_close(rks))) rd_kafka_error_destroy(e);
        if ((e = rd_kafka_share_destroy(rks))) rd_kafka_error_destroy(e);
        return NULL;
}

/* IncrementalAlterConfigs SET on the GROUP resource. */
static void group_configs(const char *brokers, const char *group, int n, char **kv) {
        char err[512];
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        set(c, "bootstrap.servers", brokers);
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof err);
        if (!rk) die(err);
        rd_kafka_ConfigResource_t *cr = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_GROUP, group);
        for (int i = 0; i < n; i++) {
                char *k = strdup(kv[i]), *eq = strchr(k, '=');
                if (!eq) die("group config must be k=v");
                *eq = 0;
                rd_kafka_error_t *e = rd_kafka_ConfigResource_add_incremental_config(
                    cr, k, RD_KAFKA_ALTER_CONFIG_OP_TYPE_SET, eq + 1);
                if (e) die(rd_kafka_error_string(e));
                free(k);
        }
        rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
        rd_kafka_IncrementalAlterConfigs(rk, &cr, 1, NULL, q);
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 20000);
        if (!ev) die("IncrementalAlterConfigs: timed out");
        if (rd_kafka_event_error(ev)) {
                fprintf(stderr, "sbench: IncrementalAlterConfigs: %s\n", rd_kafka_event_error_string(ev));
                exit(1);
        }
        size_t rn;
        const rd_kafka_ConfigResource_t **rs = rd_kafka_IncrementalAlterConfigs_result_resources(
            rd_kafka_event_IncrementalAlterConfigs_result(ev), &rn);
        if (rn != 1 || rd_kafka_ConfigResource_error(rs[0])) {
                fprintf(stderr, "sbench: IncrementalAlterConfigs %s: %s\n", group,
                        rn ? rd_kafka_ConfigResource_error_string(rs[0]) : "no result");
                exit(1);
        }
        rd_kafka_event_destroy(ev);
        rd_kafka_ConfigResource_destroy(cr);
        rd_kafka_queue_destroy(q);
        rd_kafka_destroy(rk);
}

static int share(int argc, char **argv) {
        if (argc < 7) die("share <brokers> <topic> <count> <group> <workers> [k=v | g:k=v ...]");
        sh.brokers = argv[2];
        sh.topic = argv[3];
        sh.want = strtoull(argv[4], 0, 10);
        sh.group = argv[5];
        int workers = atoi(argv[6]);
        sh.argc = argc;
        sh.argv = argv;
        const char *mode = getenv("SBENCH_SHARE_COMMIT");
        sh.sync = mode && !strcmp(mode, "sync");
        sh.poll_ms = getenv("SBENCH_SHARE_POLL_MS") ? atoi(getenv("SBENCH_SHARE_POLL_MS")) : 1;
        pthread_mutex_init(&sh.lock, NULL);
        if (workers < 1) die("workers >= 1");

        /* the topic's records: partitions and watermarks */
        char err[512];
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        set(c, "bootstrap.servers", sh.brokers);
        set(c, "group.id", "sbench-watermarks");
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof err);
        if (!rk) die(err);
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, sh.topic, NULL);
        const rd_kafka_metadata_t *md;
        if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR) die("metadata");
        sh.parts = md->topics[0].partition_cnt;
        rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
        sh.lo = calloc(sh.parts, sizeof *sh.lo);
        sh.hi = calloc(sh.parts, sizeof *sh.hi);
        sh.base = calloc(sh.parts, sizeof *sh.base);
        for (int p = 0; p < sh.parts; p++) {
                if (rd_kafka_query_watermark_offsets(rk, sh.topic, p, &sh.lo[p], &sh.hi[p], 10000))
                        die("query_watermark_offsets");
                sh.base[p] = sh.total;
                sh.total += sh.hi[p] - sh.lo[p];
        }
        rd_kafka_destroy(rk);
        if (!sh.want || sh.want > sh.total) sh.want = sh.total;
        sh.seen = calloc(sh.total + 1, 1);
        sh.acked = calloc(sh.total + 1, 1);
        sh.commit_ts = calloc(sh.total + 1, sizeof *sh.commit_ts);

        /* the group starts at the earliest offset; then any g:k=v */
        char *gc[64];
        int ng = 0;
        gc[ng++] = "share.auto.offset.reset=earliest";
        for (int i = 7; i < argc && ng < 64; i++)
                if (!strncmp(argv[i], "g:", 2)) gc[ng++] = argv[i] + 2;
        group_configs(sh.brokers, sh.group, ng, gc);

        pthread_t *th = calloc(workers, sizeof *th);
        sh.t0 = now_ns();
        for (int i = 0; i < workers; i++)
                pthread_create(&th[i], NULL, share_worker, (void *)(intptr_t)i);
        /* stall guard: nothing newly acknowledged for $SBENCH_STALL_S (30) s */
        double stall_s = getenv("SBENCH_STALL_S") ? atof(getenv("SBENCH_STALL_S")) : 30;
        uint64_t last_n = 0, last_t = now_ns();
        int stalled = 0;
        while (!__atomic_load_n(&sh.done, __ATOMIC_ACQUIRE)) {
                usleep(20000);
                uint64_t a = __atomic_load_n(&sh.acked_n, __ATOMIC_RELAXED);
                if (a != last_n) {
                        last_n = a;
                        last_t = now_ns();
                } else if (now_ns() - last_t > (uint64_t)(stall_s * 1e9)) {
                        stalled = 1;
                        sh.t_end = last_t;
                        __atomic_store_n(&sh.done, 1, __ATOMIC_RELEASE);
                }
        }
        uint64_t tc0 = now_ns();
        for (int i = 0; i < workers; i++) pthread_join(th[i], NULL);
        double close_s = (now_ns() - tc0) / 1e9;
        uint64_t t_end = sh.t_end ? sh.t_end : now_ns();
        double secs = (double)(t_end - sh.t0) / 1e9;
        double steady = sh.t_first && t_end > sh.t_first ? (double)(t_end - sh.t_first) / 1e9 : 0;
        /* records acknowledged by t_end (callbacks of the last batches may count a few more) */
        double done_n = (double)(sh.acked_n < sh.want ? sh.acked_n : sh.want);
        uint64_t never = 0; /* of the wanted records, how many were never delivered */
        if (sh.want == sh.total)
                for (uint64_t i = 0; i < sh.total; i++) never += !sh.seen[i];
        printf("{\"mode\":\"share\",\"topic\":\"%s\",\"group\":\"%s\",\"partitions\":%d,"
               "\"workers\":%d,\"commit\":\"%s\",\"count\":%llu,\"acked\":%llu,\"delivered\":%llu,"
               "\"duplicates\":%llu,\"ack_duplicates\":%llu,\"never_delivered\":%llu,"
               "\"ack_failed\":%llu,\"first_ack_error\":\"%s\",\"record_errors\":%llu,"
               "\"poll_errors\":%llu,\"first_poll_error\":\"%s\",\"out_of_range\":%llu,"
               "\"commits\":%llu,\"stalled\":%s,\"seconds\":%.3f,\"first_msg_ms\":%.1f,"
               "\"close_s\":%.3f,\"msgs_per_s\":%.0f,\"mb_per_s\":%.2f,\"steady_msgs_per_s\":%.0f,"
               "\"ack_p50_ms\":%.3f,\"ack_p99_ms\":%.3f,\"ack_max_ms\":%.3f}\n",
               sh.topic, sh.group, sh.parts, workers, sh.sync ? "sync" : "async",
               (unsigned long long)sh.want, (unsigned long long)sh.acked_n,
               (unsigned long long)sh.delivered, (unsigned long long)sh.dups,
               (unsigned long long)sh.ack_dups, (unsigned long long)never,
               (unsigned long long)sh.ack_failed, sh.ack_failed ? rd_kafka_err2name(sh.first_ack_err) : "",
               (unsigned long long)sh.rec_errs, (unsigned long long)sh.poll_errs, sh.first_poll_err,
               (unsigned long long)sh.out_of_range, (unsigned long long)sh.commits,
               stalled ? "true" : "false", secs,
               sh.t_first ? (sh.t_first - sh.t0) / 1e6 : -1.0, close_s,
               done_n / secs, done_n * ((double)sh.bytes / (sh.delivered ? sh.delivered : 1)) / secs / 1e6,
               steady > 0 ? done_n / steady : 0.0,
               pct_ms(0.50), pct_ms(0.99), lat_max_us / 1000.0);
        return sh.acked_n < sh.want || sh.dups ? 2 : 0;
}

static int assigned_events;
static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t e,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
        (void)opaque;
        int coop = !strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE");
        if (e == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
                if (coop) rd_kafka_incremental_assign(rk, parts);
                else rd_kafka_assign(rk, parts);
                assigned_events++;
        } else {
                if (coop) rd_kafka_incremental_unassign(rk, parts);
                else rd_kafka_assign(rk, NULL);
        }
}

static rd_kafka_t *group_consumer(const char *brokers, const char *group,
                                  const char *proto, int argc, char **argv) {
        char err[512];
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        set(c, "bootstrap.servers", brokers);
        set(c, "group.id", group);
        set(c, "group.protocol", proto);
        set(c, "enable.auto.commit", "false");
        set(c, "auto.offset.reset", "earliest");
        extra(c, argc, argv, 6);
        rd_kafka_conf_set_rebalance_cb(c, rebalance_cb);
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof err);
        if (!rk) die(err);
        return rk;
}

static void subscribe(rd_kafka_t *rk, const char *t1, const char *t2) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(2);
        rd_kafka_topic_partition_list_add(l, t1, RD_KAFKA_PARTITION_UA);
        if (t2) rd_kafka_topic_partition_list_add(l, t2, RD_KAFKA_PARTITION_UA);
        if (rd_kafka_subscribe(rk, l)) die("subscribe");
        rd_kafka_topic_partition_list_destroy(l);
}

/* Poll until the number of assignment events exceeds `before`; seconds or -1. */
static double wait_assign(rd_kafka_t *rk, int before, uint64_t t0) {
        while (assigned_events <= before) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 20);
                if (m) rd_kafka_message_destroy(m);
                if (now_ns() - t0 > 60ull * 1000000000ull) return -1;
        }
        return (now_ns() - t0) / 1e9;
}

static int join(int argc, char **argv) {
        if (argc < 6) die("join <brokers> <topic> <group> <classic|consumer>");
        const char *brokers = argv[2], *topic = argv[3], *group = argv[4], *proto = argv[5];
        char topic2[512];
        snprintf(topic2, sizeof topic2, "%s-b", topic);
        /* make sure both topics exist before timing (auto-create via metadata) */
        {
                char err[512];
                rd_kafka_conf_t *c = rd_kafka_conf_new();
                set(c, "bootstrap.servers", brokers);
                rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof err);
                const char *ts[2] = {topic, topic2};
                for (int i = 0; i < 2; i++) {
                        rd_kafka_topic_t *t = rd_kafka_topic_new(p, ts[i], NULL);
                        const rd_kafka_metadata_t *md;
                        if (rd_kafka_metadata(p, 0, t, &md, 10000) == 0) rd_kafka_metadata_destroy(md);
                        rd_kafka_topic_destroy(t);
                }
                rd_kafka_destroy(p);
        }
        rd_kafka_t *rk = group_consumer(brokers, group, proto, argc, argv);
        uint64_t t0 = now_ns();
        subscribe(rk, topic, NULL);
        double first = wait_assign(rk, 0, t0);
        /* rejoin: an existing member of the stable group changes its subscription */
        int before = assigned_events;
        uint64_t t1 = now_ns();
        subscribe(rk, topic, topic2);
        double rejoin = wait_assign(rk, before, t1);
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        /* restart: a new consumer joins the same, now empty, group */
        rk = group_consumer(brokers, group, proto, argc, argv);
        before = assigned_events;
        uint64_t t2 = now_ns();
        subscribe(rk, topic, NULL);
        double restart = wait_assign(rk, before, t2);
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        printf("{\"mode\":\"join\",\"protocol\":\"%s\",\"first_join_s\":%.3f,"
               "\"rejoin_s\":%.3f,\"restart_join_s\":%.3f}\n",
               proto, first, rejoin, restart);
        return first < 0 ? 2 : 0;
}

static int create(int argc, char **argv) {
        if (argc < 5) die("create <brokers> <topic> <partitions> [config=value ...]");
        char err[512];
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        set(c, "bootstrap.servers", argv[2]);
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof err);
        if (!rk) die(err);
        int rf = getenv("SBENCH_RF") ? atoi(getenv("SBENCH_RF")) : 1;
        /* SBENCH_ASSIGN=2,3,1: every partition's replicas, in that order (the first is the
         * preferred leader); the replication factor is then theirs. */
        const char *assign = getenv("SBENCH_ASSIGN");
        int32_t ids[16];
        size_t n_ids = 0;
        for (const char *a = assign; a && *a && n_ids < 16; a = strchr(a, ',') ? strchr(a, ',') + 1 : "")
                ids[n_ids++] = atoi(a);
        int parts = atoi(argv[4]);
        rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(argv[3], parts, n_ids ? -1 : rf, err, sizeof err);
        if (!nt) die(err);
        for (int p = 0; n_ids && p < parts; p++)
                if (rd_kafka_NewTopic_set_replica_assignment(nt, p, ids, n_ids, err, sizeof err))
                        die(err);
        for (int i = 5; i < argc; i++) { /* topic configs: k=v */
                char *kv = strdup(argv[i]), *eq = strchr(kv, '=');
                if (!eq) die("topic config must be k=v");
                *eq = 0;
                if (rd_kafka_NewTopic_set_config(nt, kv, eq + 1)) die("topic config");
                free(kv);
        }
        rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
        rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 20000);
        int rc = 1;
        if (ev) {
                const rd_kafka_CreateTopics_result_t *r = rd_kafka_event_CreateTopics_result(ev);
                size_t n;
                const rd_kafka_topic_result_t **tr = rd_kafka_CreateTopics_result_topics(r, &n);
                rd_kafka_resp_err_t e = n ? rd_kafka_topic_result_error(tr[0]) : rd_kafka_event_error(ev);
                if (e == 0 || e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
                        rc = 0;
                        printf("{\"mode\":\"create\",\"topic\":\"%s\",\"result\":\"%s\"}\n",
                               argv[3], rd_kafka_err2name(e));
                }
                else fprintf(stderr, "sbench: create %s: %s\n", argv[3], rd_kafka_err2str(e));
                rd_kafka_event_destroy(ev);
        } else fprintf(stderr, "sbench: create %s: timed out\n", argv[3]);
        rd_kafka_NewTopic_destroy(nt);
        rd_kafka_queue_destroy(q);
        rd_kafka_destroy(rk);
        return rc;
}

static int delete_topic(int argc, char **argv) {
        if (argc < 4) die("delete <brokers> <topic>");
        char err[512];
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        set(c, "bootstrap.servers", argv[2]);
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof err);
        if (!rk) die(err);
        rd_kafka_DeleteTopic_t *dt = rd_kafka_DeleteTopic_new(argv[3]);
        rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
        rd_kafka_DeleteTopics(rk, &dt, 1, NULL, q);
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
        int rc = 1;
        if (ev) {
                const rd_kafka_DeleteTopics_result_t *r = rd_kafka_event_DeleteTopics_result(ev);
                size_t n;
                const rd_kafka_topic_result_t **tr = rd_kafka_DeleteTopics_result_topics(r, &n);
                rd_kafka_resp_err_t e = n ? rd_kafka_topic_result_error(tr[0]) : rd_kafka_event_error(ev);
                if (e == 0 || e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
                        rc = 0;
                        printf("{\"mode\":\"delete\",\"topic\":\"%s\",\"result\":\"%s\"}\n",
                               argv[3], rd_kafka_err2name(e));
                } else fprintf(stderr, "sbench: delete %s: %s\n", argv[3], rd_kafka_err2str(e));
                rd_kafka_event_destroy(ev);
        } else fprintf(stderr, "sbench: delete %s: timed out\n", argv[3]);
        rd_kafka_DeleteTopic_destroy(dt);
        rd_kafka_queue_destroy(q);
        rd_kafka_destroy(rk);
        return rc;
}

static int probe(int argc, char **argv) {
        if (argc < 4) die("probe <brokers> <topic>");
        char err[512];
        uint64_t t0 = now_ns();
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        set(c, "bootstrap.servers", argv[2]);
        set(c, "group.id", "sbench-probe");
        set(c, "enable.auto.commit", "false");
        set(c, "reconnect.backoff.ms", "10");
        set(c, "reconnect.backoff.max.ms", "50");
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof err);
        if (!rk) die(err);
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, argv[3], NULL);
        const rd_kafka_metadata_t *md = NULL;
        while (rd_kafka_metadata(rk, 0, rkt, &md, 500) != 0)
                if (now_ns() - t0 > 120ull * 1000000000ull) die("probe: no metadata");
        rd_kafka_metadata_destroy(md);
        double t_md = (now_ns() - t0) / 1e6;
        rd_kafka_topic_destroy(rkt);
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, argv[3], 0)->offset = RD_KAFKA_OFFSET_TAIL(1);
        rd_kafka_assign(rk, l);
        rd_kafka_topic_partition_list_destroy(l);
        int64_t off = -1;
        while (off < 0) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
                if (m) {
                        if (!m->err) off = m->offset;
                        rd_kafka_message_destroy(m);
                }
                if (now_ns() - t0 > 120ull * 1000000000ull) die("probe: no fetch");
        }
        printf("{\"mode\":\"probe\",\"metadata_ms\":%.1f,\"fetch_ms\":%.1f,\"last_offset\":%lld}\n",
               t_md, (now_ns() - t0) / 1e6, (long long)off);
        rd_kafka_destroy(rk);
        return 0;
}

static void print_ids(const int32_t *ids, int n) {
        putchar('[');
        for (int i = 0; i < n; i++) printf("%s%d", i ? "," : "", ids[i]);
        putchar(']');
}

static int meta(int argc, char **argv) {
        if (argc < 3) die("meta <brokers> [<topic>]");
        char err[512];
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        set(c, "bootstrap.servers", argv[2]);
        set(c, "allow.auto.create.topics", "false");
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof err);
        if (!rk) die(err);
        rd_kafka_topic_t *rkt = argc > 3 ? rd_kafka_topic_new(rk, argv[3], NULL) : NULL;
        const rd_kafka_metadata_t *md;
        rd_kafka_resp_err_t e = rd_kafka_metadata(rk, rkt ? 0 : 1, rkt, &md, 5000);
        if (e) {
                fprintf(stderr, "sbench: metadata: %s\n", rd_kafka_err2str(e));
                return 1;
        }
        printf("{\"mode\":\"meta\",\"brokers\":[");
        for (int i = 0; i < md->broker_cnt; i++)
                printf("%s{\"id\":%d,\"port\":%d}", i ? "," : "", md->brokers[i].id,
                       md->brokers[i].port);
        printf("],\"topics\":{");
        for (int t = 0; t < md->topic_cnt; t++) {
                const rd_kafka_metadata_topic_t *tp = &md->topics[t];
                printf("%s\"%s\":{\"error\":\"%s\",\"partitions\":[", t ? "," : "", tp->topic,
                       tp->err ? rd_kafka_err2name(tp->err) : "");
                for (int p = 0; p < tp->partition_cnt; p++) {
                        const rd_kafka_metadata_partition_t *pp = &tp->partitions[p];
                        printf("%s{\"id\":%d,\"leader\":%d,\"error\":\"%s\",\"replicas\":",
                               p ? "," : "", pp->id, pp->leader, pp->err ? rd_kafka_err2name(pp->err) : "");
                        print_ids(pp->replicas, pp->replica_cnt);
                        printf(",\"isr\":");
                        print_ids(pp->isrs, pp->isr_cnt);
                        putchar('}');
                }
                printf("]}");
        }
        printf("}}\n");
        rd_kafka_metadata_destroy(md);
        if (rkt) rd_kafka_topic_destroy(rkt);
        rd_kafka_destroy(rk);
        return 0;
}

int main(int argc, char **argv) {
        if (argc < 2) die("usage: sbench produce|consume|join ...");
        if (!strcmp(argv[1], "produce")) return produce(argc, argv);
        if (!strcmp(argv[1], "consume")) return consume(argc, argv);
        if (!strcmp(argv[1], "share")) return share(argc, argv);
        if (!strcmp(argv[1], "join")) return join(argc, argv);
        if (!strcmp(argv[1], "create")) return create(argc, argv);
        if (!strcmp(argv[1], "delete")) return delete_topic(argc, argv);
        if (!strcmp(argv[1], "probe")) return probe(argc, argv);
        if (!strcmp(argv[1], "meta")) return meta(argc, argv);
        if (!strcmp(argv[1], "version")) {
                printf("%s\n", rd_kafka_version_str());
                return 0;
        }
        die("unknown mode");
        return 1;
}
