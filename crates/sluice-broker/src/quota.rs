//! Client quotas, as Kafka has them (KIP-13, KIP-124, KIP-219): `producer_byte_rate`,
//! `consumer_byte_rate` and `request_percentage`, set on users, client ids, both, or their
//! defaults, and enforced per broker.
//!
//! How a quota is enforced:
//! - each request's cost is taken from the client's credit: produce request bytes, fetch
//!   response bytes, and the time the request's handler ran (in percent of one core, so
//!   `request_percentage = 50` is half a core);
//! - the credit is a token bucket ([`Bucket`]) the quota refills continuously, holding at most
//!   [`BURST_MS`] of quota; a request that takes more than the credit leaves a debt, and the
//!   throttle is the time the quota needs to repay it;
//! - the response carries the throttle in `throttle_time_ms` and the connection reads nothing
//!   more for that long (KIP-219: the client also holds back).
//!
//! Kafka measures byte rates with a sampled rate over 11 one-second windows instead. Under a
//! client that sends whenever it may, that lets through about 11 s of quota at once each time
//! the oldest window expires, then nothing for seconds: right on average, 2× and 0.1× over
//! any few seconds. The bucket is Kafka's own answer to that (KIP-599's `TokenBucket`, used for
//! its controller mutation quota), with a burst of one second, so a throttled client runs at
//! its quota over any few seconds.
//!
//! Which quota applies to a (user, client id) pair is Kafka's precedence, most specific first,
//! resolved for each quota type on its own:
//! `/users/<u>/clients/<c>`, `/users/<u>/clients/<default>`, `/users/<u>`,
//! `/users/<default>/clients/<c>`, `/users/<default>/clients/<default>`, `/users/<default>`,
//! `/clients/<c>`, `/clients/<default>`. Clients that resolve to a quota set on a user alone
//! share one rate; a quota with a client-id part is a rate per client id.
//!
//! This module does no IO and reads no clock: callers pass `now_ms`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use sluice_controller::{ClientQuotas, EntityName};

use crate::limits::{MAX_QUOTA_NAME_KEY_BYTES, MAX_QUOTA_SENSORS, MAX_THROTTLE_MS};

pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
pub const REQUEST_PERCENTAGE: &str = "request_percentage";

/// The user of a connection that did not authenticate (Kafka's principal name).
pub const ANONYMOUS: &str = "ANONYMOUS";

/// The most quota a client may spend at once: a bucket holds this much time of its quota.
/// (Kafka's `quota.window.size.seconds`, whose default is also one second.)
pub const BURST_MS: i64 = 1_000;
/// A bucket no request has touched for this long is dropped (Kafka's one hour of sensor
/// inactivity); by then it is full, so nothing is lost.
pub const SENSOR_IDLE_MS: i64 = 3_600_000;

/// What a quota limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaType {
    /// Produce request bytes per second (`producer_byte_rate`).
    Produce = 0,
    /// Fetch response bytes per second (`consumer_byte_rate`).
    Fetch = 1,
    /// Percent of one core spent handling requests (`request_percentage`).
    Request = 2,
}

impl QuotaType {
    pub const ALL: [QuotaType; 3] = [QuotaType::Produce, QuotaType::Fetch, QuotaType::Request];

    /// The quota's config key.
    pub fn key(self) -> &'static str {
        match self {
            QuotaType::Produce => PRODUCER_BYTE_RATE,
            QuotaType::Fetch => CONSUMER_BYTE_RATE,
            QuotaType::Request => REQUEST_PERCENTAGE,
        }
    }

    /// The quota type a config key names.
    pub fn from_key(key: &str) -> Option<QuotaType> {
        QuotaType::ALL.into_iter().find(|t| t.key() == key)
    }

    /// Its name in metrics.
    pub fn label(self) -> &'static str {
        match self {
            QuotaType::Produce => "produce",
            QuotaType::Fetch => "fetch",
            QuotaType::Request => "request",
        }
    }

    /// Byte-rate quotas are whole numbers (Kafka's LONG configs); the request percentage is a
    /// double.
    pub fn integral(self) -> bool {
        self != QuotaType::Request
    }

    /// The longest throttle: a request quota throttles at most one window (Kafka's), a
    /// bandwidth quota as long as its excess takes, up to [`MAX_THROTTLE_MS`].
    fn max_throttle_ms(self) -> i64 {
        match self {
            QuotaType::Request => BURST_MS,
            _ => MAX_THROTTLE_MS,
        }
    }
}

/// The quotas of one entity, by [`QuotaType`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Limits([Option<f64>; 3]);

impl Limits {
    fn from_map(quotas: &BTreeMap<String, sluice_controller::QuotaValue>) -> Limits {
        let mut l = Limits::default();
        for (key, value) in quotas {
            if let Some(t) = QuotaType::from_key(key) {
                l.0[t as usize] = Some(value.0);
            }
        }
        l
    }

    fn get(&self, t: QuotaType) -> Option<f64> {
        self.0[t as usize]
    }
}

/// The quotas of one user level (a named user, the default user, or no user part).
#[derive(Debug, Default)]
struct UserLevel {
    clients: HashMap<String, Limits>,
    default_client: Option<Limits>,
    /// The quotas set on the user alone (no client-id part); unused on the no-user level.
    alone: Option<Limits>,
}

/// Which rate a request is recorded into: the user and client id, or "" for a part the
/// matched quota does not have (Kafka's metric tags).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RateKey {
    quota: QuotaType,
    user: String,
    client_id: String,
}

/// A matched quota: its bound and whose rate it is.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Matched {
    bound: f64,
    per_user: bool,
    per_client: bool,
}

/// Quota settings in the shape requests look them up in (built from the cluster image).
#[derive(Debug, Default)]
pub struct QuotaConfig {
    users: HashMap<String, UserLevel>,
    default_user: UserLevel,
    no_user: UserLevel,
    empty: bool,
}

impl QuotaConfig {
    pub fn from_image(quotas: &[ClientQuotas]) -> QuotaConfig {
        let mut c = QuotaConfig {
            empty: quotas.is_empty(),
            ..QuotaConfig::default()
        };
        for q in quotas {
            let limits = Limits::from_map(&q.quotas);
            let level = match &q.entity.user {
                Some(EntityName::Named(u)) => c.users.entry(u.clone()).or_default(),
                Some(EntityName::Default) => &mut c.default_user,
                None => &mut c.no_user,
            };
            match &q.entity.client_id {
                Some(EntityName::Named(id)) => {
                    level.clients.insert(id.clone(), limits);
                }
                Some(EntityName::Default) => level.default_client = Some(limits),
                None => level.alone = Some(limits),
            }
        }
        c
    }

    /// Kafka's precedence for one quota type (see the module docs).
    fn resolve(&self, t: QuotaType, user: &str, client_id: &str) -> Option<Matched> {
        let found = |l: Option<&Limits>| l.and_then(|l| l.get(t));
        let at = |bound, per_user, per_client| {
            Some(Matched {
                bound,
                per_user,
                per_client,
            })
        };
        for level in [self.users.get(user), Some(&self.default_user)]
            .into_iter()
            .flatten()
        {
            if let Some(b) = found(level.clients.get(client_id)) {
                return at(b, true, true);
            }
            if let Some(b) = found(level.default_client.as_ref()) {
                return at(b, true, true);
            }
            if let Some(b) = found(level.alone.as_ref()) {
                return at(b, true, false);
            }
        }
        if let Some(b) = found(self.no_user.clients.get(client_id)) {
            return at(b, false, true);
        }
        if let Some(b) = found(self.no_user.default_client.as_ref()) {
            return at(b, false, true);
        }
        None
    }
}

/// A client's credit against one quota: a token bucket that the quota refills continuously
/// and that holds at most [`BURST_MS`] of it. A request takes its cost out; what it takes
/// beyond the credit is a debt the client waits out (the throttle), so over any stretch longer
/// than the burst a client gets its quota and no more.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Credit in the quota's unit; negative is debt.
    tokens: f64,
    /// When the credit was last brought up to date; `None` before the first request.
    at_ms: Option<i64>,
}

impl Bucket {
    /// Takes `value` out at `now_ms` under `bound` per second; returns the throttle in ms.
    fn take(&mut self, value: f64, bound: f64, now_ms: i64, max_throttle_ms: i64) -> i64 {
        let capacity = bound * BURST_MS as f64 / 1000.0;
        let refill = match self.at_ms {
            None => capacity,
            Some(at) => bound * now_ms.saturating_sub(at).max(0) as f64 / 1000.0,
        };
        self.tokens = (self.tokens + refill).min(capacity) - value;
        self.at_ms = Some(self.at_ms.map_or(now_ms, |at| at.max(now_ms)));
        throttle_ms(-self.tokens, bound, max_throttle_ms)
    }

    fn last_used_ms(&self) -> i64 {
        self.at_ms.unwrap_or(0)
    }
}

/// The quotas in force on this broker and the rates of the clients they apply to.
pub struct Quotas {
    config: RwLock<Arc<QuotaConfig>>,
    rates: Mutex<HashMap<RateKey, Bucket>>,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            config: RwLock::new(Arc::new(QuotaConfig {
                empty: true,
                ..QuotaConfig::default()
            })),
            rates: Mutex::new(HashMap::new()),
        }
    }
}

impl Quotas {
    /// Puts new settings in force (the rates carry on).
    pub fn set_config(&self, config: QuotaConfig) {
        *self.config.write() = Arc::new(config);
    }

    /// True while no quota is set anywhere: requests then record nothing.
    pub fn is_empty(&self) -> bool {
        self.config.read().empty
    }

    /// Records `value` against the quota of type `t` that applies to `user` and `client_id`,
    /// if any, and returns the throttle in ms (0 within the quota).
    pub fn record(
        &self,
        t: QuotaType,
        user: &str,
        client_id: &str,
        value: f64,
        now_ms: i64,
    ) -> i64 {
        let config = self.config.read().clone();
        if config.empty {
            return 0;
        }
        let Some(m) = config.resolve(t, user, client_id) else {
            return 0;
        };
        // Keys hold the names: a client id longer than the bound shares the overflow rate of
        // its quota type (throttled with the others there, never less), so the rates' memory
        // stays within MAX_QUOTA_SENSORS keys of bounded size.
        let overflow = RateKey {
            quota: t,
            user: String::new(),
            client_id: String::new(),
        };
        let key = if m.per_client && client_id.len() > MAX_QUOTA_NAME_KEY_BYTES {
            overflow.clone()
        } else {
            RateKey {
                quota: t,
                user: if m.per_user {
                    user.to_owned()
                } else {
                    String::new()
                },
                client_id: if m.per_client {
                    client_id.to_owned()
                } else {
                    String::new()
                },
            }
        };
        let mut rates = self.rates.lock();
        if !rates.contains_key(&key) && rates.len() >= MAX_QUOTA_SENSORS {
            rates.retain(|_, r| now_ms.saturating_sub(r.last_used_ms()) < SENSOR_IDLE_MS);
        }
        // Full of live rates (client ids made up by the thousand): the newcomer shares the
        // overflow rate of its quota type too.
        let key = if !rates.contains_key(&key) && rates.len() >= MAX_QUOTA_SENSORS {
            overflow
        } else {
            key
        };
        rates
            .entry(key)
            .or_default()
            .take(value, m.bound, now_ms, t.max_throttle_ms())
    }

    /// The rates being tracked (a metric).
    pub fn tracked(&self) -> usize {
        self.rates.lock().len()
    }
}

/// How long the quota `bound` (per second) needs to repay `debt`.
fn throttle_ms(debt: f64, bound: f64, max_ms: i64) -> i64 {
    if debt <= 0.0 || bound <= 0.0 {
        return 0;
    }
    let ms = (debt / bound * 1000.0).ceil();
    if ms.is_finite() {
        (ms as i64).clamp(0, max_ms)
    } else {
        max_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_controller::{QuotaEntity, QuotaValue};

    fn entry(
        user: Option<EntityName>,
        client: Option<EntityName>,
        key: &str,
        v: f64,
    ) -> ClientQuotas {
        ClientQuotas {
            entity: QuotaEntity {
                user,
                client_id: client,
            },
            quotas: BTreeMap::from([(key.to_string(), QuotaValue(v))]),
        }
    }

    fn named(s: &str) -> Option<EntityName> {
        Some(EntityName::Named(s.into()))
    }

    #[test]
    fn precedence_is_kafkas() {
        let d = || Some(EntityName::Default);
        let mut all = vec![
            entry(named("u"), named("c"), PRODUCER_BYTE_RATE, 1.0),
            entry(named("u"), d(), PRODUCER_BYTE_RATE, 2.0),
            entry(named("u"), None, PRODUCER_BYTE_RATE, 3.0),
            entry(d(), named("c"), PRODUCER_BYTE_RATE, 4.0),
            entry(d(), d(), PRODUCER_BYTE_RATE, 5.0),
            entry(d(), None, PRODUCER_BYTE_RATE, 6.0),
            entry(None, named("c"), PRODUCER_BYTE_RATE, 7.0),
            entry(None, d(), PRODUCER_BYTE_RATE, 8.0),
        ];
        // Removing the most specific quota one at a time reveals the next.
        for expected in 1..=8 {
            let c = QuotaConfig::from_image(&all);
            let m = c.resolve(QuotaType::Produce, "u", "c").unwrap();
            assert_eq!(m.bound, expected as f64);
            assert_eq!(m.per_user, expected <= 6);
            assert_eq!(m.per_client, ![3, 6].contains(&expected));
            assert!(c.resolve(QuotaType::Fetch, "u", "c").is_none());
            all.remove(0);
        }
        assert!(QuotaConfig::from_image(&all)
            .resolve(QuotaType::Produce, "u", "c")
            .is_none());
    }

    /// A client that sends `size` every `gap_ms` unless throttled, and waits out each
    /// throttle (KIP-219): the bytes it got through by each 5 s mark.
    fn drive(q: &Quotas, client: &str, size: f64, gap_ms: i64, until_ms: i64) -> Vec<f64> {
        let (mut now, mut sent, mut marks) = (0i64, 0.0, vec![0.0]);
        while now < until_ms {
            sent += size;
            now += gap_ms + q.record(QuotaType::Produce, ANONYMOUS, client, size, now);
            while now >= 5_000 * marks.len() as i64 {
                marks.push(sent);
            }
        }
        marks
    }

    #[test]
    fn a_client_sending_as_fast_as_it_may_gets_its_quota_over_every_five_seconds() {
        let q = Quotas::default();
        let bound = 512_000.0;
        q.set_config(QuotaConfig::from_image(&[entry(
            None,
            named("greedy"),
            PRODUCER_BYTE_RATE,
            bound,
        )]));
        for (size, gap) in [(65_536.0, 2), (4_096.0, 0)] {
            let marks = drive(&q, "greedy", size, gap, 60_000);
            for w in marks.windows(2).skip(1) {
                let rate = (w[1] - w[0]) / 5.0;
                assert!((rate / bound - 1.0).abs() < 0.05, "{size}: {rate} over 5 s");
            }
            q.rates.lock().clear();
        }
        // Requests of 2 s of quota each: right over the minute.
        let marks = drive(&q, "greedy", 1_048_576.0, 1, 60_000);
        let rate = (marks[12] - marks[1]) / 55.0;
        assert!((rate / bound - 1.0).abs() < 0.05, "1 MiB requests: {rate}");
        q.rates.lock().clear();
        // Others are not recorded at all.
        assert_eq!(q.record(QuotaType::Produce, ANONYMOUS, "other", 1e9, 0), 0);
        assert_eq!(q.tracked(), 0);
    }

    #[test]
    fn a_client_under_its_quota_is_never_throttled() {
        let q = Quotas::default();
        q.set_config(QuotaConfig::from_image(&[entry(
            None,
            named("calm"),
            PRODUCER_BYTE_RATE,
            100_000.0,
        )]));
        let mut now = 0;
        while now < 30_000 {
            // 90 KB/s in 9 KB requests.
            assert_eq!(
                q.record(QuotaType::Produce, ANONYMOUS, "calm", 9_000.0, now),
                0
            );
            now += 100;
        }
    }

    #[test]
    fn throttles_are_bounded() {
        assert_eq!(throttle_ms(1e12, 1.0, BURST_MS), BURST_MS);
        assert_eq!(throttle_ms(200.0, 100.0, MAX_THROTTLE_MS), 2_000);
        assert_eq!(throttle_ms(-50.0, 100.0, MAX_THROTTLE_MS), 0);
        assert_eq!(
            throttle_ms(f64::INFINITY, 100.0, MAX_THROTTLE_MS),
            MAX_THROTTLE_MS
        );
    }

    #[test]
    fn made_up_client_ids_cannot_grow_the_rates_past_the_bound() {
        let q = Quotas::default();
        q.set_config(QuotaConfig::from_image(&[entry(
            None,
            Some(EntityName::Default),
            PRODUCER_BYTE_RATE,
            1000.0,
        )]));
        for i in 0..MAX_QUOTA_SENSORS + 10 {
            q.record(QuotaType::Produce, ANONYMOUS, &format!("c{i}"), 1.0, 0);
        }
        assert_eq!(q.tracked(), MAX_QUOTA_SENSORS + 1);
        // Long client ids share the overflow rate instead of holding their names.
        let q = Quotas::default();
        q.set_config(QuotaConfig::from_image(&[entry(
            None,
            Some(EntityName::Default),
            PRODUCER_BYTE_RATE,
            1000.0,
        )]));
        for i in 0..100 {
            let long = format!("{i}{}", "x".repeat(MAX_QUOTA_NAME_KEY_BYTES));
            q.record(QuotaType::Produce, ANONYMOUS, &long, 1.0, 0);
        }
        assert_eq!(q.tracked(), 1);
    }
}
