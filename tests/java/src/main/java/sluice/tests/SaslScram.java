package sluice.tests;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.CommonClientConfigs;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DescribeUserScramCredentialsResult;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialDeletion;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.SaslConfigs;
import org.apache.kafka.common.config.SslConfigs;
import org.apache.kafka.common.errors.ResourceNotFoundException;
import org.apache.kafka.common.errors.SaslAuthenticationException;
import org.apache.kafka.common.errors.UnacceptableCredentialException;

/**
 * SASL_SSL with SCRAM through the Java client (kafka-clients 4.x), for
 * tests/python/test_java_security.py:
 *
 *   Main sasl-scram BOOTSTRAP CA_PEM ADMIN_USER ADMIN_PASSWORD TOPIC
 *
 * BOOTSTRAP is a SASL_SSL listener whose certificate chains to CA_PEM and names the host
 * (hostname verification stays on, as by default). As ADMIN_USER (SCRAM-SHA-512) the Admin
 * creates "java-user" (SCRAM-SHA-256, 8192 iterations) with alterUserScramCredentials and
 * describes it; unknown users and iterations outside Kafka's 4096..16384 are refused with
 * Kafka's exceptions. java-user then produces 100 records (acks=all, idempotent) and reads them
 * back in order in a consumer group; a wrong password, and a mechanism java-user has no
 * credential for, fail with SaslAuthenticationException. Deleting the credential makes describe
 * fail with ResourceNotFoundException and java-user's logins fail.
 */
final class SaslScram {
    private SaslScram() {}

    static final String USER = "java-user";
    static final String PASSWORD = "java-user-secret";
    static final int ITERATIONS = 8192;
    static final int RECORDS = 100;
    static final Duration LOGIN_BOUND = Duration.ofSeconds(20);

    /** The client settings of a SASL_SSL listener with SCRAM (what docs and Kafka's own tests give). */
    static Properties security(String bootstrap, String caPem, String mechanism, String user, String password) {
        Properties p = new Properties();
        p.put(CommonClientConfigs.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(CommonClientConfigs.SECURITY_PROTOCOL_CONFIG, "SASL_SSL");
        p.put(SaslConfigs.SASL_MECHANISM, mechanism);
        p.put(SaslConfigs.SASL_JAAS_CONFIG, "org.apache.kafka.common.security.scram.ScramLoginModule required"
                + " username=\"" + user + "\" password=\"" + password + "\";");
        p.put(SslConfigs.SSL_TRUSTSTORE_TYPE_CONFIG, "PEM");
        p.put(SslConfigs.SSL_TRUSTSTORE_LOCATION_CONFIG, caPem);
        // ssl.endpoint.identification.algorithm keeps its default (https): the host is verified.
        return p;
    }

    static Admin admin(Properties security) {
        Properties p = new Properties();
        p.putAll(security);
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 30000);
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 10000);
        return Admin.create(p);
    }

    static KafkaProducer<String, String> producer(Properties security) {
        Properties p = Util.producerProps(security.getProperty(CommonClientConfigs.BOOTSTRAP_SERVERS_CONFIG));
        p.putAll(security);
        return new KafkaProducer<>(p);
    }

    /** What `call` failed with (ExecutionException unwrapped), or null when it succeeded. */
    static Throwable failure(Callable<?> call) {
        try {
            call.call();
            return null;
        } catch (ExecutionException e) {
            return e.getCause();
        } catch (Exception e) {
            return e;
        }
    }

    /** `call` fails with a `k` (checked once: the state it depends on is already in force). */
    static void expectFailure(String what, Class<? extends Throwable> k, Callable<?> call) {
        Throwable t = failure(call);
        if (!k.isInstance(t)) {
            AssertionError e = new AssertionError(what + ": expected " + k.getSimpleName() + ", got "
                    + (t == null ? "success" : t + " (causes " + Util.causes(t) + ")"));
            if (t != null) {
                e.initCause(t);
            }
            throw e;
        }
        System.out.println("CHECK ok: " + what + " (" + k.getSimpleName() + ": " + t.getMessage() + ")");
    }

    /** The cluster id as an Admin logged in with `security` sees it (a full SASL_SSL login). */
    static String clusterId(Properties security) throws Exception {
        try (Admin a = admin(security)) {
            return a.describeCluster().clusterId().get(30, TimeUnit.SECONDS);
        }
    }

    /** A login with `security` fails with SaslAuthenticationException, through an Admin and a producer. */
    static void loginFails(String what, Properties security, String topic) {
        expectFailure(what + ": Admin.describeCluster", SaslAuthenticationException.class, () -> clusterId(security));
        expectFailure(what + ": producer send", SaslAuthenticationException.class, () -> {
            try (KafkaProducer<String, String> p = producer(security)) {
                return p.send(new ProducerRecord<>(topic, "k", "never")).get(30, TimeUnit.SECONDS);
            }
        });
    }

    static List<ScramCredentialInfo> described(Admin admin, String user) throws Exception {
        return admin.describeUserScramCredentials(List.of(user)).description(user).get(30, TimeUnit.SECONDS)
                .credentialInfos();
    }

    static void run(String bootstrap, String[] args) throws Exception {
        String caPem = args[0];
        String adminUser = args[1];
        String adminPassword = args[2];
        String topic = args[3];
        Properties asAdmin = security(bootstrap, caPem, "SCRAM-SHA-512", adminUser, adminPassword);
        Properties asUser = security(bootstrap, caPem, "SCRAM-SHA-256", USER, PASSWORD);

        try (Admin admin = admin(asAdmin)) {
            String cluster = admin.describeCluster().clusterId().get(30, TimeUnit.SECONDS);
            Util.check(cluster != null && !cluster.isEmpty(),
                    "the admin user logs in over SASL_SSL with SCRAM-SHA-512 (cluster " + cluster + ")");

            // 1. Credentials through the Admin API.
            ScramCredentialInfo info = new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, ITERATIONS);
            admin.alterUserScramCredentials(List.of(new UserScramCredentialUpsertion(USER, info, PASSWORD)))
                    .all().get(30, TimeUnit.SECONDS);
            Util.await(USER + " described with SCRAM-SHA-256 and " + ITERATIONS + " iterations", Duration.ofSeconds(10),
                    () -> described(admin, USER), l -> l.equals(List.of(info)));
            List<String> users = admin.describeUserScramCredentials().users().get(30, TimeUnit.SECONDS);
            Util.check(users.contains(USER) && users.contains(adminUser),
                    "describing every user lists " + USER + " and " + adminUser + ": " + users);
            List<ScramMechanism> adminMechanisms = new ArrayList<>();
            for (ScramCredentialInfo i : described(admin, adminUser)) {
                adminMechanisms.add(i.mechanism());
            }
            adminMechanisms.sort(null);
            Util.checkEq(List.of(ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512), adminMechanisms,
                    "the bootstrap user " + adminUser + " has a SCRAM-SHA-256 and a SCRAM-SHA-512 credential");
            expectFailure("describing an unknown user", ResourceNotFoundException.class,
                    () -> described(admin, "no-such-user"));
            // Among known users, the unknown one fails alone (a per-user RESOURCE_NOT_FOUND): the
            // client's users() leaves it out, its all() maps it to no credential (kafka-clients 4.1).
            DescribeUserScramCredentialsResult mixed = admin.describeUserScramCredentials(List.of(USER, "no-such-user"));
            Util.checkEq(List.of(USER), mixed.users().get(30, TimeUnit.SECONDS),
                    "describing " + USER + " and an unknown user: users() lists " + USER + " only");
            Map<String, List<ScramCredentialInfo>> all = new TreeMap<>();
            mixed.all().get(30, TimeUnit.SECONDS).forEach((u, d) -> all.put(u, d.credentialInfos()));
            Util.checkEq(new TreeMap<>(Map.of(USER, List.of(info), "no-such-user", List.<ScramCredentialInfo>of())), all,
                    "describing " + USER + " and an unknown user: all() gives the unknown one no credential");
            expectFailure("describing " + USER + " and an unknown user: the unknown one's description",
                    ResourceNotFoundException.class, () -> mixed.description("no-such-user").get(30, TimeUnit.SECONDS));
            for (int bad : new int[] {100, 16385}) {
                expectFailure("an upsertion with " + bad + " iterations", UnacceptableCredentialException.class,
                        () -> admin.alterUserScramCredentials(List.of(new UserScramCredentialUpsertion(USER,
                                new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, bad), "weak")))
                                .all().get(30, TimeUnit.SECONDS));
            }
            Util.checkEq(List.of(info), described(admin, USER), "the refused upsertions left " + USER + " unchanged");

            // 2. java-user produces and consumes over SASL_SSL with SCRAM-SHA-256.
            admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1)))
                    .all().get(30, TimeUnit.SECONDS);
            Util.check(admin.listTopics().names().get(30, TimeUnit.SECONDS).contains(topic), "created " + topic);

            List<Long> acked = new ArrayList<>();
            try (KafkaProducer<String, String> p = producer(asUser)) {
                List<Future<RecordMetadata>> sent = new ArrayList<>();
                for (int i = 0; i < RECORDS; i++) {
                    sent.add(p.send(new ProducerRecord<>(topic, "k" + i, "v" + i)));
                }
                for (Future<RecordMetadata> f : sent) {
                    acked.add(f.get(30, TimeUnit.SECONDS).offset());
                }
            }
            List<Long> expectOffsets = new ArrayList<>();
            for (long i = 0; i < RECORDS; i++) {
                expectOffsets.add(i);
            }
            Util.checkEq(expectOffsets, acked, USER + "'s idempotent acks=all producer got every ack, offsets 0.."
                    + (RECORDS - 1));

            String group = topic + "-group";
            List<String> values = new ArrayList<>();
            List<Long> offsets = new ArrayList<>();
            Properties cp = Util.consumerProps(bootstrap, group, "read_committed");
            cp.putAll(asUser);
            try (KafkaConsumer<String, String> c = new KafkaConsumer<>(cp)) {
                c.subscribe(List.of(topic));
                long deadline = System.nanoTime() + Duration.ofSeconds(45).toNanos();
                while (values.size() < RECORDS) {
                    if (System.nanoTime() > deadline) {
                        throw new AssertionError("the group consumer read " + values.size() + " of " + RECORDS
                                + " records within 45 s: " + values);
                    }
                    for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                        values.add(r.value());
                        offsets.add(r.offset());
                    }
                }
                c.commitSync(Duration.ofSeconds(30));
            }
            List<String> expectValues = new ArrayList<>();
            for (int i = 0; i < RECORDS; i++) {
                expectValues.add("v" + i);
            }
            Util.checkEq(expectValues, values, USER + "'s group consumer read all " + RECORDS + " records in order");
            Util.checkEq(expectOffsets, offsets, "at offsets 0.." + (RECORDS - 1));
            Map<TopicPartition, OffsetAndMetadata> committed = admin.listConsumerGroupOffsets(group)
                    .partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS);
            Util.checkEq((long) RECORDS, committed.get(new TopicPartition(topic, 0)).offset(),
                    "the group's commit is seen by the admin user");

            // 3. Wrong credentials.
            loginFails("the admin user with a wrong password",
                    security(bootstrap, caPem, "SCRAM-SHA-512", adminUser, adminPassword + "-wrong"), topic);
            loginFails(USER + " with a wrong password",
                    security(bootstrap, caPem, "SCRAM-SHA-256", USER, "not-" + PASSWORD), topic);
            loginFails(USER + " with SCRAM-SHA-512 (it has only a SCRAM-SHA-256 credential)",
                    security(bootstrap, caPem, "SCRAM-SHA-512", USER, PASSWORD), topic);
            Util.check(clusterId(asUser).equals(cluster), USER + " still logs in with its password");

            // 4. Deleting the credential.
            admin.alterUserScramCredentials(List.of(new UserScramCredentialDeletion(USER, ScramMechanism.SCRAM_SHA_256)))
                    .all().get(30, TimeUnit.SECONDS);
            Util.await("describing " + USER + " after the deletion fails with ResourceNotFoundException",
                    Duration.ofSeconds(10), () -> failure(() -> described(admin, USER)),
                    t -> t instanceof ResourceNotFoundException);
            expectFailure("deleting the deleted credential again", ResourceNotFoundException.class,
                    () -> admin.alterUserScramCredentials(List.of(
                            new UserScramCredentialDeletion(USER, ScramMechanism.SCRAM_SHA_256)))
                            .all().get(30, TimeUnit.SECONDS));
            loginFails(USER + " after its credential was deleted", asUser, topic);
            Util.check(!admin.describeUserScramCredentials().users().get(30, TimeUnit.SECONDS).contains(USER),
                    USER + " is no longer listed");
            Util.check(clusterId(asAdmin).equals(cluster), "the admin user still logs in");
        }
    }
}
