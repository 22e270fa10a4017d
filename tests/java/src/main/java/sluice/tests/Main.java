package sluice.tests;

import java.util.Arrays;

/**
 * Entry point of the JVM exactly-once scenarios (driven by tests/python/test_java_*.py):
 *
 *   java -cp CLASSPATH sluice.tests.Main SCENARIO BOOTSTRAP ARGS...
 *
 * Transactions (ARGS = topic prefix): txn-commit-abort, txn-fencing, txn-send-offsets, txn-timeout.
 * Kafka Streams exactly_once_v2: streams-app, streams-generate, streams-verify (see StreamsEos).
 * Replication: failover-client (tests/cluster/test_client_failover.py), describe-quorum (see Failover).
 * Share-group offset admin: share-offsets-list, share-offsets-alter, share-offsets-delete (see ShareAdmin).
 * Client quotas through the AdminClient: quotas CLIENT_ID (see ClientQuotas).
 * Security: sasl-scram CA_PEM ADMIN_USER ADMIN_PASSWORD TOPIC, BOOTSTRAP being a SASL_SSL listener
 * (SCRAM credentials through the AdminClient, SCRAM logins over TLS; see SaslScram).
 * Prints "CHECK ok: ..." per assertion and "PASSED <scenario>" at the end; exits 1 on a failed
 * check or an error (the message and stack trace on stderr).
 */
public final class Main {
    private Main() {}

    public static void main(String[] args) {
        if (args.length < 2) {
            System.err.println("usage: Main SCENARIO BOOTSTRAP ARGS...");
            System.exit(2);
        }
        String scenario = args[0];
        String bootstrap = args[1];
        String[] rest = Arrays.copyOfRange(args, 2, args.length);
        try {
            switch (scenario) {
                case "txn-commit-abort" -> TxnScenarios.commitAbort(bootstrap, rest[0]);
                case "txn-fencing" -> TxnScenarios.fencing(bootstrap, rest[0]);
                case "txn-send-offsets" -> TxnScenarios.sendOffsets(bootstrap, rest[0], "classic");
                case "txn-send-offsets-kip848" -> TxnScenarios.sendOffsets(bootstrap, rest[0], "consumer");
                case "txn-timeout" -> TxnScenarios.timeout(bootstrap, rest[0]);
                case "streams-app" -> StreamsEos.app(bootstrap, rest);
                case "streams-generate" -> StreamsEos.generate(bootstrap, rest);
                case "streams-verify" -> StreamsEos.verify(bootstrap, rest);
                case "failover-client" -> Failover.client(bootstrap, rest);
                case "describe-quorum" -> Failover.describeQuorum(bootstrap);
                case "share-offsets-list" -> ShareAdmin.list(bootstrap, rest);
                case "share-offsets-alter" -> ShareAdmin.alter(bootstrap, rest);
                case "share-offsets-delete" -> ShareAdmin.delete(bootstrap, rest);
                case "quotas" -> ClientQuotas.run(bootstrap, rest[0]);
                case "sasl-scram" -> SaslScram.run(bootstrap, rest);
                case "transaction-version" -> System.out.println(Util.transactionVersion(bootstrap));
                default -> {
                    System.err.println("unknown scenario " + scenario);
                    System.exit(2);
                }
            }
        } catch (Throwable t) {
            System.out.flush();
            System.err.println("FAILED " + scenario + ": " + t);
            t.printStackTrace();
            System.err.flush();
            Runtime.getRuntime().halt(1);
        }
        System.out.println("PASSED " + scenario);
        System.out.flush();
        // Client threads must not keep a finished scenario alive.
        Runtime.getRuntime().halt(0);
    }
}
