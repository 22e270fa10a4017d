package sluice.tests;

import java.util.HashMap;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ListShareGroupOffsetsSpec;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;

/**
 * Share-group offset admin through the Java AdminClient (KIP-932's listShareGroupOffsets,
 * alterShareGroupOffsets, deleteShareGroupOffsets), for tests/cluster/test_three_nodes_share_groups.py:
 *
 *   Main share-offsets-list BOOTSTRAP GROUP                 prints OFFSET topic partition start
 *   Main share-offsets-alter BOOTSTRAP GROUP TOPIC OFFSET P... sets each partition P's start
 *   Main share-offsets-delete BOOTSTRAP GROUP TOPIC          forgets the group's state on TOPIC
 *
 * A partition the group has not read lists start -1.
 */
final class ShareAdmin {
    private ShareAdmin() {}

    static void list(String bootstrap, String[] args) throws Exception {
        String group = args[0];
        try (Admin admin = Util.admin(bootstrap)) {
            Map<TopicPartition, OffsetAndMetadata> offsets = admin
                .listShareGroupOffsets(Map.of(group, new ListShareGroupOffsetsSpec()))
                .partitionsToOffsetAndMetadata(group)
                .get(60, TimeUnit.SECONDS);
            Map<String, Long> sorted = new TreeMap<>();
            offsets.forEach((tp, o) -> sorted.put(tp.topic() + " " + tp.partition(), o == null ? -1L : o.offset()));
            sorted.forEach((tp, o) -> System.out.println("OFFSET " + tp + " " + o));
        }
    }

    static void alter(String bootstrap, String[] args) throws Exception {
        String group = args[0];
        String topic = args[1];
        long offset = Long.parseLong(args[2]);
        Map<TopicPartition, Long> wanted = new HashMap<>();
        for (int i = 3; i < args.length; i++) {
            wanted.put(new TopicPartition(topic, Integer.parseInt(args[i])), offset);
        }
        try (Admin admin = Util.admin(bootstrap)) {
            admin.alterShareGroupOffsets(group, wanted).all().get(60, TimeUnit.SECONDS);
        }
        System.out.println("CHECK ok: altered " + wanted.size() + " partitions");
    }

    static void delete(String bootstrap, String[] args) throws Exception {
        String group = args[0];
        String topic = args[1];
        try (Admin admin = Util.admin(bootstrap)) {
            admin.deleteShareGroupOffsets(group, Set.of(topic)).all().get(60, TimeUnit.SECONDS);
        }
        System.out.println("CHECK ok: deleted " + topic);
    }
}
