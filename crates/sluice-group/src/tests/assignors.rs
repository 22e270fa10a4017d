use std::collections::{BTreeMap, BTreeSet};

use crate::assignor::{assign, range, uniform, Assignment, MemberSpec};

const T1: [u8; 16] = [1; 16];
const T2: [u8; 16] = [2; 16];

fn spec(id: &str, topics: &[[u8; 16]]) -> MemberSpec {
    MemberSpec {
        member_id: id.to_string(),
        topics: topics.iter().copied().collect(),
    }
}

fn parts(a: &BTreeMap<String, Assignment>, member: &str, topic: [u8; 16]) -> Vec<i32> {
    a.get(member)
        .and_then(|x| x.get(&topic))
        .map(|s| s.iter().copied().collect())
        .unwrap_or_default()
}

fn count(a: &BTreeMap<String, Assignment>, member: &str) -> usize {
    a.get(member)
        .map_or(0, |x| x.values().map(BTreeSet::len).sum())
}

fn assert_exact_cover(a: &BTreeMap<String, Assignment>, partitions: &BTreeMap<[u8; 16], i32>) {
    let mut seen = BTreeSet::new();
    for assignment in a.values() {
        for (t, ps) in assignment {
            for p in ps {
                assert!(seen.insert((*t, *p)), "partition {p} assigned twice");
            }
        }
    }
    let total: i32 = partitions.values().sum();
    assert_eq!(seen.len(), usize::try_from(total).unwrap());
}

#[test]
fn range_gives_contiguous_ranges_in_member_id_order() {
    let members = vec![spec("c", &[T1, T2]), spec("a", &[T1, T2]), spec("b", &[T1])];
    let partitions = BTreeMap::from([(T1, 7), (T2, 3)]);
    let a = range(&members, &partitions);
    assert_eq!(parts(&a, "a", T1), vec![0, 1, 2]);
    assert_eq!(parts(&a, "b", T1), vec![3, 4]);
    assert_eq!(parts(&a, "c", T1), vec![5, 6]);
    // T2 only has subscribers a and c.
    assert_eq!(parts(&a, "a", T2), vec![0, 1]);
    assert_eq!(parts(&a, "c", T2), vec![2]);
    assert!(parts(&a, "b", T2).is_empty());
    assert_exact_cover(&a, &partitions);
}

#[test]
fn range_with_more_members_than_partitions() {
    let members = vec![spec("a", &[T1]), spec("b", &[T1]), spec("c", &[T1])];
    let partitions = BTreeMap::from([(T1, 2)]);
    let a = range(&members, &partitions);
    assert_eq!(parts(&a, "a", T1), vec![0]);
    assert_eq!(parts(&a, "b", T1), vec![1]);
    assert!(parts(&a, "c", T1).is_empty());
    assert!(a.contains_key("c"));
}

#[test]
fn uniform_is_balanced() {
    let members = vec![
        spec("a", &[T1, T2]),
        spec("b", &[T1, T2]),
        spec("c", &[T1, T2]),
    ];
    let partitions = BTreeMap::from([(T1, 7), (T2, 3)]);
    let a = uniform(&members, &partitions, &BTreeMap::new());
    let counts: Vec<usize> = ["a", "b", "c"].iter().map(|m| count(&a, m)).collect();
    assert_eq!(counts.iter().sum::<usize>(), 10);
    assert!(counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1);
    assert_exact_cover(&a, &partitions);
}

#[test]
fn uniform_is_sticky_when_a_member_joins() {
    let partitions = BTreeMap::from([(T1, 6)]);
    let two = vec![spec("a", &[T1]), spec("b", &[T1])];
    let before = uniform(&two, &partitions, &BTreeMap::new());
    assert_eq!(count(&before, "a"), 3);
    let three = vec![spec("a", &[T1]), spec("b", &[T1]), spec("c", &[T1])];
    let after = uniform(&three, &partitions, &before);
    for m in ["a", "b", "c"] {
        assert_eq!(count(&after, m), 2);
    }
    // a and b each lost exactly one partition and kept the rest.
    for m in ["a", "b"] {
        let kept: BTreeSet<i32> = parts(&after, m, T1).into_iter().collect();
        let old: BTreeSet<i32> = parts(&before, m, T1).into_iter().collect();
        assert!(kept.is_subset(&old));
    }
    assert_exact_cover(&after, &partitions);
}

#[test]
fn uniform_heterogeneous_subscriptions() {
    let members = vec![spec("a", &[T1]), spec("b", &[T1, T2]), spec("c", &[T2])];
    let partitions = BTreeMap::from([(T1, 4), (T2, 4)]);
    let a = uniform(&members, &partitions, &BTreeMap::new());
    assert!(parts(&a, "a", T2).is_empty());
    assert!(parts(&a, "c", T1).is_empty());
    let counts: Vec<usize> = ["a", "b", "c"].iter().map(|m| count(&a, m)).collect();
    assert!(counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1);
    assert_exact_cover(&a, &partitions);
}

#[test]
fn unknown_name_falls_back_and_empty_inputs_work() {
    let a = assign("nope", &[], &BTreeMap::new(), &BTreeMap::new());
    assert!(a.is_empty());
    let members = vec![spec("a", &[T1])];
    let a = assign(
        "range",
        &members,
        &BTreeMap::from([(T1, -3)]),
        &BTreeMap::new(),
    );
    assert_eq!(count(&a, "a"), 0);
}
