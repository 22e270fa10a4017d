package sluice.tests;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.common.errors.InvalidRequestException;
import org.apache.kafka.common.quota.ClientQuotaAlteration;
import org.apache.kafka.common.quota.ClientQuotaEntity;
import org.apache.kafka.common.quota.ClientQuotaFilter;
import org.apache.kafka.common.quota.ClientQuotaFilterComponent;

/**
 * Client quotas through the Java AdminClient (alterClientQuotas, describeClientQuotas: what
 * kafka-configs.sh --entity-type users|clients sends), for tests/python/test_quotas.py:
 *
 *   Main quotas BOOTSTRAP CLIENT_ID
 *
 * Sets quotas on CLIENT_ID, on the default user and on (user ANONYMOUS, CLIENT_ID); describes
 * them with exact, default and any-name filters, strict and not; checks a fractional byte rate
 * is refused; removes them. Prints CHECK lines and ends with "CHECK ok".
 */
final class ClientQuotas {
    private ClientQuotas() {}

    static void run(String bootstrap, String clientId) throws Exception {
        Map<String, String> client = Map.of(ClientQuotaEntity.CLIENT_ID, clientId);
        Map<String, String> defaultUser = Collections.singletonMap(ClientQuotaEntity.USER, null);
        Map<String, String> both = Map.of(ClientQuotaEntity.USER, "ANONYMOUS", ClientQuotaEntity.CLIENT_ID, clientId);
        try (Admin admin = Util.admin(bootstrap)) {
            admin.alterClientQuotas(List.of(
                new ClientQuotaAlteration(new ClientQuotaEntity(client), List.of(
                    new ClientQuotaAlteration.Op("producer_byte_rate", 1048576.0),
                    new ClientQuotaAlteration.Op("consumer_byte_rate", 2097152.0))),
                alteration(defaultUser, "request_percentage", 150.5),
                alteration(both, "producer_byte_rate", 4096.0)
            )).all().get(60, TimeUnit.SECONDS);

            // Exactly the client-id entity.
            Map<String, Map<String, Double>> exact = describe(admin, ClientQuotaFilter.containsOnly(
                List.of(ClientQuotaFilterComponent.ofEntity(ClientQuotaEntity.CLIENT_ID, clientId))));
            expect(exact, "{{client-id=" + clientId + "}={consumer_byte_rate=2097152.0, producer_byte_rate=1048576.0}}");
            // The default user.
            Map<String, Map<String, Double>> dflt = describe(admin, ClientQuotaFilter.containsOnly(
                List.of(ClientQuotaFilterComponent.ofDefaultEntity(ClientQuotaEntity.USER))));
            expect(dflt, "{{user=null}={request_percentage=150.5}}");
            // Every entity with a client-id part, not strict: the client and the pair.
            Map<String, Map<String, Double>> any = describe(admin, ClientQuotaFilter.contains(
                List.of(ClientQuotaFilterComponent.ofEntityType(ClientQuotaEntity.CLIENT_ID))));
            expect(any, "{{client-id=" + clientId + ", user=ANONYMOUS}={producer_byte_rate=4096.0}, {client-id="
                + clientId + "}={consumer_byte_rate=2097152.0, producer_byte_rate=1048576.0}}");

            // A fractional byte rate is refused (Kafka's check), and nothing changes.
            try {
                admin.alterClientQuotas(List.of(alteration(client, "producer_byte_rate", 1.5)))
                    .all().get(60, TimeUnit.SECONDS);
                throw new AssertionError("a fractional producer_byte_rate was accepted");
            } catch (ExecutionException e) {
                if (!(e.getCause() instanceof InvalidRequestException)) {
                    throw new AssertionError("expected InvalidRequestException, got " + e.getCause());
                }
                System.out.println("CHECK refused: " + e.getCause().getMessage());
            }

            // Removing every key removes the entity.
            admin.alterClientQuotas(List.of(
                new ClientQuotaAlteration(new ClientQuotaEntity(client), List.of(
                    new ClientQuotaAlteration.Op("producer_byte_rate", null),
                    new ClientQuotaAlteration.Op("consumer_byte_rate", null))),
                alteration(defaultUser, "request_percentage", null),
                alteration(both, "producer_byte_rate", null)
            )).all().get(60, TimeUnit.SECONDS);
            expect(describe(admin, ClientQuotaFilter.all()), "{}");
        }
        System.out.println("CHECK ok");
    }

    private static ClientQuotaAlteration alteration(Map<String, String> entity, String key, Double value) {
        return new ClientQuotaAlteration(new ClientQuotaEntity(entity),
            List.of(new ClientQuotaAlteration.Op(key, value)));
    }

    /** The entities (their parts sorted) and values (sorted), as text-comparable maps. */
    private static Map<String, Map<String, Double>> describe(Admin admin, ClientQuotaFilter filter) throws Exception {
        Map<String, Map<String, Double>> out = new TreeMap<>();
        admin.describeClientQuotas(filter).entities().get(60, TimeUnit.SECONDS).forEach((entity, values) -> {
            List<String> parts = new ArrayList<>();
            new TreeMap<>(entity.entries()).forEach((k, v) -> parts.add(k + "=" + v));
            out.put("{" + String.join(", ", parts) + "}", new TreeMap<>(values));
        });
        return out;
    }

    private static void expect(Map<String, Map<String, Double>> got, String want) {
        String text = got.toString();
        System.out.println("CHECK describe " + text);
        if (!text.equals(want)) {
            throw new AssertionError("described " + text + ", expected " + want);
        }
    }
}
