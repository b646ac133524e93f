//! A simulated day of a fleet, on a clock the simulation drives: refresh
//! passes every 5 minutes, displays reading tokens, identity providers that
//! fail in every class, and every store call recorded as Secrets Manager
//! would see it (a write over a version is PutSecretValue plus
//! UpdateSecretVersionStage; a list is one ListSecrets per 100 names).
//!
//! The cost benchmark (`cargo bench --bench fleet_day`) prints what it
//! measures; `tests/tests/api/store_quotas.rs` asserts the quotas on a smaller
//! fleet.

use async_trait::async_trait;
use roomtoken::clock::{Clock, ManualClock, Sleeper};
use roomtoken::domain::{
    AccessToken, AccessTokens, Account, AccountKey, Cloud, ConnectionId, Grant, GrantRecord,
    Provider, Resource, Secret, ServeRecord, Status, Writer,
};
use roomtoken::flows::admin::{self, NewConnection};
use roomtoken::flows::read::{MIN_SERVE_VALIDITY, ReadError, TokenRequest, read_token};
use roomtoken::flows::refresh::{Outcome, PassOptions, next_pass_in, refresh_pass};
use roomtoken::store::{
    FileStore, Listed, Part, Repository, SecretStore, SecretsManagerStore, StoreError, StoreResult,
    Stored, Version,
};
use roomtoken::{Broker, Config};
use roomtoken_fake_identity::{FakeAccount, FakeApp, FakeIdentity, Fault};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;

use crate::{ACCOUNT, CLIENT_ID, TENANT};

/// One store call, as Secrets Manager would bill and throttle it.
#[derive(Clone, Debug)]
pub struct Call {
    pub at: OffsetDateTime,
    pub name: String,
    pub kind: CallKind,
    /// The refresh pass that sent it (the product's own activity), counted
    /// from 1; `None` for people and displays.
    pub pass: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    /// GetSecretValue.
    Get,
    /// ListSecrets pages.
    List {
        pages: u64,
    },
    /// CreateSecret: one call, one version.
    Create,
    /// PutSecretValue + UpdateSecretVersionStage: two calls, one version.
    Update,
    Delete,
}

impl CallKind {
    pub fn api_calls(self) -> u64 {
        match self {
            Self::Get | Self::Create | Self::Delete => 1,
            Self::List { pages } => pages,
            Self::Update => 2,
        }
    }

    /// Calls that count against the shared write quota.
    pub fn write_calls(self) -> u64 {
        match self {
            Self::Create | Self::Update => self.api_calls(),
            _ => 0,
        }
    }
}

/// A store decorator that records every call at the simulated time, and
/// spends the pacer's budget as Secrets Manager's call pattern does.
pub struct CallLog {
    inner: Arc<dyn SecretStore>,
    clock: Arc<ManualClock>,
    calls: Mutex<Vec<Call>>,
    pass: AtomicUsize,
}

impl CallLog {
    pub fn new(inner: Arc<dyn SecretStore>, clock: Arc<ManualClock>) -> Self {
        Self {
            inner,
            clock,
            calls: Mutex::new(Vec::new()),
            pass: AtomicUsize::new(0),
        }
    }

    /// Marks the calls that follow as sent by refresh pass `pass` (`0`:
    /// by no pass).
    pub fn set_pass(&self, pass: usize) {
        self.pass.store(pass, Ordering::SeqCst);
    }

    fn record(&self, name: &str, kind: CallKind) {
        self.calls.lock().expect("call log").push(Call {
            at: self.clock.now(),
            name: name.to_owned(),
            kind,
            pass: Some(self.pass.load(Ordering::SeqCst)).filter(|&n| n > 0),
        });
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("call log").clone()
    }
}

#[async_trait]
impl SecretStore for CallLog {
    fn losing_write_makes_version(&self) -> bool {
        self.inner.losing_write_makes_version()
    }

    async fn get(&self, name: &str) -> Result<Option<Stored>, StoreError> {
        self.record(name, CallKind::Get);
        self.inner.get(name).await
    }

    async fn put(&self, name: &str, value: &str, prior: Option<&Version>) -> StoreResult<Version> {
        let kind = if prior.is_some() {
            CallKind::Update
        } else {
            CallKind::Create
        };
        self.record(name, kind);
        self.inner.put(name, value, prior).await
    }

    async fn delete(&self, name: &str) -> Result<(), StoreError> {
        self.record(name, CallKind::Delete);
        self.inner.delete(name).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let names = self.inner.list(prefix).await?;
        let pages = (names.len() as u64).div_ceil(100).max(1);
        self.record(prefix, CallKind::List { pages });
        Ok(names)
    }

    async fn list_marked(&self, prefix: &str) -> StoreResult<Vec<Listed>> {
        let listed = self.inner.list_marked(prefix).await?;
        let pages = (listed.len() as u64).div_ceil(100).max(1);
        self.record(prefix, CallKind::List { pages });
        Ok(listed)
    }

    fn counts_versions(&self) -> bool {
        self.inner.counts_versions()
    }

    fn calls_per_write(&self, creating: bool) -> u32 {
        if creating { 1 } else { 2 }
    }
}

/// Waiting moves the simulated clock instead of spending time.
pub struct SimulatedSleeper(pub Arc<ManualClock>);

#[async_trait]
impl Sleeper for SimulatedSleeper {
    async fn sleep(&self, duration: Duration) {
        self.0.advance(duration);
    }
}

/// How a connection's identity provider behaves all day.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Behaviour {
    Healthy,
    /// 503 on every request: degraded all day.
    Transient,
    /// AADSTS700082: the booking account must sign in again.
    ReconnectNeeded,
    /// AADSTS7000222: the client secret expired.
    AppMisconfigured,
    /// AADSTS53003: Conditional Access.
    Blocked,
    /// AADSTS70011: a request we should never send.
    OurBug,
}

impl Behaviour {
    pub const ALL: [Behaviour; 6] = [
        Self::Healthy,
        Self::Transient,
        Self::ReconnectNeeded,
        Self::AppMisconfigured,
        Self::Blocked,
        Self::OurBug,
    ];

    fn fault(self) -> Option<Fault> {
        let aadsts = |status: u16, error: &str, code: u32| Fault::Aadsts {
            status,
            error: error.into(),
            code,
            suberror: None,
        };
        match self {
            Self::Healthy => None,
            Self::Transient => Some(Fault::ServerError { status: 503 }),
            Self::ReconnectNeeded => Some(aadsts(400, "invalid_grant", 700082)),
            Self::AppMisconfigured => Some(aadsts(401, "invalid_client", 7000222)),
            Self::Blocked => Some(aadsts(400, "invalid_grant", 53003)),
            Self::OurBug => Some(aadsts(400, "invalid_scope", 70011)),
        }
    }
}

/// How displays read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Displays {
    /// Fetch again when the answer's `max-age` (or `Retry-After`) runs out.
    HonourCacheControl,
    /// Fetch every minute whatever the answer said.
    EveryMinute,
    /// Fetch every 10 seconds whatever the answer said (the worst case).
    EveryFewSeconds,
}

impl Displays {
    fn every(self) -> Option<Duration> {
        match self {
            Self::HonourCacheControl => None,
            Self::EveryMinute => Some(Duration::from_secs(60)),
            Self::EveryFewSeconds => Some(Duration::from_secs(10)),
        }
    }
}

#[derive(Clone, Debug)]
pub struct FleetOptions {
    /// Connections per behaviour.
    pub connections: BTreeMap<Behaviour, usize>,
    pub displays_per_connection: usize,
    pub displays: Displays,
    pub hours: u32,
    /// Person writes (key create and revoke) on the first connection, one
    /// every this many minutes: the key churn of an operator.
    pub key_churn_every_minutes: Option<u32>,
    /// A pass's time budget (`ROOMTOKEN_REFRESH_BUDGET`; the template sets 3m).
    pub pass_budget: Duration,
    /// Every connection's tokens have this long left at the start (a
    /// backlog); `None`: spread over the token lifetime.
    pub all_due_in: Option<Duration>,
    /// token-refresh starts cold this often (its memory of what passes
    /// found is lost); `None`: it stays warm all day.
    pub refresh_cold_start_every: Option<Duration>,
    /// How long the identity platform's access tokens live.
    pub token_lifetime: Duration,
    /// Which store the day runs on.
    pub store: FleetStore,
    /// Refresh passes run this often; `None`: every 5 minutes, as the
    /// schedule runs them. `Some(ZERO)`: as `roomtoken serve` runs them,
    /// at the next moment a token is due (at least every 5 minutes).
    pub pass_every: Option<Duration>,
}

impl FleetOptions {
    /// `count` connections of each behaviour, one display each, displays
    /// honouring Cache-Control, one day.
    pub fn day(count: usize) -> Self {
        Self {
            connections: Behaviour::ALL.iter().map(|&b| (b, count)).collect(),
            displays_per_connection: 1,
            displays: Displays::HonourCacheControl,
            hours: 24,
            key_churn_every_minutes: None,
            pass_budget: Duration::from_secs(3 * 60),
            all_due_in: None,
            refresh_cold_start_every: None,
            token_lifetime: Duration::from_secs(75 * 60),
            store: FleetStore::FileCountingVersions,
            pass_every: None,
        }
    }
}

/// The store of a simulated day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FleetStore {
    /// The file store counting Secrets Manager's versions: it stands for
    /// Secrets Manager, fast enough for a fleet.
    FileCountingVersions,
    /// The file store as it is: no version quota.
    File,
    /// Secrets Manager itself (moto, under a prefix of its own).
    SecretsManager,
}

/// What a simulated day measured.
#[derive(Debug)]
pub struct FleetReport {
    pub connections: usize,
    pub hours: u32,
    pub calls: Vec<Call>,
    pub refreshes: usize,
    pub reads_served: u64,
    /// Reads answered 503 while the connection's stored token was still
    /// servable (there should be none).
    pub reads_failed_with_a_valid_token: u64,
    /// Healthy connections' reads that found no servable token.
    pub healthy_reads_without_token: u64,
    pub outcomes: BTreeMap<&'static str, usize>,
    /// Person writes refused because the secret's day was full.
    pub person_writes_refused: usize,
    /// Reads of healthy connections, and those answered with a token.
    pub healthy_reads: u64,
    /// Refresh passes run.
    pub passes: usize,
    /// The states the passes left the connections in, counted over every
    /// pass.
    pub states: BTreeMap<String, usize>,
}

/// Published prices: $0.40 per secret-month, $0.05 per 10,000 API calls.
pub const SECRET_MONTH_USD: f64 = 0.40;
pub const USD_PER_CALL: f64 = 0.05 / 10_000.0;
const HOURS_PER_MONTH: f64 = 730.0;

impl FleetReport {
    fn per_connection_month(&self, count: u64) -> f64 {
        count as f64 * HOURS_PER_MONTH / f64::from(self.hours) / self.connections as f64
    }

    pub fn api_calls(&self) -> u64 {
        self.calls.iter().map(|c| c.kind.api_calls()).sum()
    }

    pub fn read_calls(&self) -> u64 {
        self.calls
            .iter()
            .filter(|c| c.kind.write_calls() == 0)
            .map(|c| c.kind.api_calls())
            .sum()
    }

    pub fn write_calls(&self) -> u64 {
        self.calls.iter().map(|c| c.kind.write_calls()).sum()
    }

    /// Secrets per connection: its two, plus the signing key shared by all.
    pub fn secrets_per_connection(&self) -> f64 {
        2.0 + 1.0 / self.connections as f64
    }

    pub fn monthly(&self) -> MonthlyCost {
        let calls = self.per_connection_month(self.api_calls());
        let secrets = self.secrets_per_connection();
        MonthlyCost {
            secrets,
            reads: self.per_connection_month(self.read_calls()),
            writes: self.per_connection_month(self.write_calls()),
            calls,
            usd: secrets * SECRET_MONTH_USD + calls * USD_PER_CALL,
        }
    }

    /// The most new versions any secret got in any `window` (sliding), of
    /// the writes `counted` selects.
    fn max_versions(
        &self,
        window: time::Duration,
        counted: impl Fn(&Call) -> bool,
    ) -> (usize, String) {
        let mut by_name: HashMap<&str, Vec<OffsetDateTime>> = HashMap::new();
        for call in self.calls.iter().filter(|c| counted(c)) {
            if matches!(call.kind, CallKind::Create | CallKind::Update) {
                by_name.entry(&call.name).or_default().push(call.at);
            }
        }
        let mut worst = (0, String::new());
        for (name, mut times) in by_name {
            times.sort();
            for (i, start) in times.iter().enumerate() {
                let end = *start + window;
                let count = times[i..].iter().take_while(|t| **t < end).count();
                if count > worst.0 {
                    worst = (count, name.to_owned());
                }
            }
        }
        worst
    }

    /// The most new versions any secret got in any hour from the product's
    /// own activity (refresh passes), and which secret.
    pub fn max_versions_per_hour_by_the_product(&self) -> (usize, String) {
        self.max_versions(time::Duration::hours(1), |call| call.pass.is_some())
    }

    /// The most new versions any secret got in any 24 hours from the
    /// product's own activity.
    pub fn max_versions_per_day_by_the_product(&self) -> (usize, String) {
        self.max_versions(time::Duration::days(1), |call| call.pass.is_some())
    }

    /// The most new versions any secret got in any hour, from anyone.
    pub fn max_versions_per_hour(&self) -> (usize, String) {
        self.max_versions(time::Duration::hours(1), |_| true)
    }

    /// The most new versions any secret got in any 24 hours, from anyone.
    pub fn max_versions_per_day(&self) -> (usize, String) {
        self.max_versions(time::Duration::days(1), |_| true)
    }

    /// The most write calls in any second (aligned to the second) during a
    /// refresh pass.
    pub fn peak_pass_writes_per_second(&self) -> u64 {
        let mut per_second: HashMap<i64, u64> = HashMap::new();
        for call in &self.calls {
            if call.pass.is_some() && call.kind.write_calls() > 0 {
                *per_second.entry(call.at.unix_timestamp()).or_default() += call.kind.write_calls();
            }
        }
        per_second.values().copied().max().unwrap_or(0)
    }

    /// Write calls per refresh pass and connection: the most any connection
    /// sent in one pass (failed attempts included), and the average over
    /// successful refreshes.
    pub fn write_calls_per_refresh(&self) -> (u64, f64) {
        let mut per: HashMap<(usize, String), u64> = HashMap::new();
        for call in &self.calls {
            if let Some(pass) = call.pass
                && call.kind.write_calls() > 0
            {
                let connection = call.name.split('/').nth(1).unwrap_or_default().to_owned();
                *per.entry((pass, connection)).or_default() += call.kind.write_calls();
            }
        }
        let most = per.values().copied().max().unwrap_or(0);
        let failed = self.outcomes.get("failed").copied().unwrap_or(0) as u64;
        // A failed attempt writes the status once (2 calls).
        let pass_calls: u64 = per.values().sum();
        let refresh_calls = pass_calls.saturating_sub(2 * failed);
        (most, refresh_calls as f64 / self.refreshes.max(1) as f64)
    }
}

#[derive(Debug)]
pub struct MonthlyCost {
    pub secrets: f64,
    pub reads: f64,
    pub writes: f64,
    pub calls: f64,
    pub usd: f64,
}

struct Connection {
    id: ConnectionId,
    behaviour: Behaviour,
    keys: Vec<String>,
    next_reads: Vec<OffsetDateTime>,
}

const CLIENT_SECRET: &str = "fleet-client-secret";
const ACCOUNT_OID: &str = "00000000-0000-4000-8000-00000000f1ee";

/// A fake identity platform with the fleet's app and booking account, its
/// access tokens living 75 minutes (Entra's 60 to 90, on average).
pub async fn fake_identity() -> FakeIdentity {
    fake_identity_issuing(Duration::from_secs(75 * 60)).await
}

/// The same, its access tokens living `lifetime`.
pub async fn fake_identity_issuing(lifetime: Duration) -> FakeIdentity {
    let fake = FakeIdentity::start().await.expect("fake identity");
    fake.register_app(FakeApp {
        tenant: TENANT.into(),
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        redirect_uris: vec!["http://127.0.0.1:9/callback".into()],
        multi_tenant: false,
        permissions: Vec::new(),
    });
    fake.add_account(FakeAccount {
        tenant: TENANT.into(),
        oid: ACCOUNT_OID.into(),
        username: ACCOUNT.into(),
        name: "fleet".into(),
        admin: false,
    });
    fake.set_access_token_lifetime(lifetime);
    fake
}

/// One fake identity platform per behaviour, each failing in its own way.
async fn identities(
    behaviours: &[Behaviour],
    lifetime: Duration,
) -> BTreeMap<Behaviour, FakeIdentity> {
    let mut fakes = BTreeMap::new();
    for &behaviour in behaviours {
        fakes.insert(behaviour, fake_identity_issuing(lifetime).await);
    }
    fakes
}

/// Keeps every failing provider failing: each attempt takes one fault.
fn keep_failing(fakes: &BTreeMap<Behaviour, FakeIdentity>) {
    for (behaviour, fake) in fakes {
        if let Some(fault) = behaviour.fault() {
            fake.clear_faults();
            for _ in 0..64 {
                fake.inject(fault.clone());
            }
        }
    }
}

/// A connection as a consent leaves it, talking to `fake`, with `displays`
/// device keys (returned) and tokens that expire in `expires_in`.
pub async fn add_consented(
    broker: &Broker,
    fake: &FakeIdentity,
    id: &ConnectionId,
    displays: usize,
    now: OffsetDateTime,
    expires_in: Duration,
) -> Vec<String> {
    let resources = Resource::presets("ews,graph", Cloud::Global).expect("presets");
    let mut provider = Provider::microsoft(TENANT, Cloud::Global).expect("provider");
    if let Provider::Microsoft { authority, .. } = &mut provider {
        *authority = Some(fake.base_url());
    }
    admin::add_connection(
        broker,
        NewConnection {
            id: id.clone(),
            provider,
            client_id: CLIENT_ID.into(),
            resources: resources.clone(),
            client_secret: Secret::new(CLIENT_SECRET),
            booking_account: None,
            client_secret_expires: None,
            certificate: None,
            app_only: false,
        },
        now,
    )
    .await
    .expect("add");
    let scope: Vec<String> = resources.iter().flat_map(|r| r.scopes.clone()).collect();
    let refresh_token = fake.seed_refresh_token(
        TENANT,
        CLIENT_ID,
        ACCOUNT,
        &format!("{} offline_access", scope.join(" ")),
    );
    let account = Account {
        key: AccountKey::Microsoft {
            tid: TENANT.into(),
            oid: ACCOUNT_OID.into(),
        },
        display: ACCOUNT.into(),
    };
    // As a consent leaves it: the grant, then tokens and a connected status.
    let grant = Grant::new(Secret::new(refresh_token), account, now);
    broker
        .repo
        .update::<GrantRecord, _>(id, Part::Grant, Writer::Person, now, |record| {
            let mut record = record?;
            record.grant = Some(grant.clone());
            Some(record)
        })
        .await
        .expect("grant");
    let keys = if displays == 0 {
        Vec::new()
    } else {
        admin::create_keys(broker, id, Some("display".into()), displays, now)
            .await
            .expect("keys")
    };
    broker
        .repo
        .update::<ServeRecord, _>(id, Part::Serve, Writer::Person, now, |record| {
            let mut record = record?;
            let tokens = resources
                .iter()
                .map(|r| AccessToken {
                    resource: r.name.clone(),
                    access_token: Secret::new(format!("seeded-{}-{}", id, r.name)),
                    token_type: "Bearer".into(),
                    scope: r.scopes.join(" "),
                    expires_at: now + expires_in,
                    // Issued up to an hour before it expires.
                    obtained_at: (now + expires_in - time::Duration::hours(1)).min(now),
                })
                .collect();
            record.access = Some(AccessTokens {
                account: ACCOUNT.into(),
                resources: resources.iter().map(|r| r.name.clone()).collect(),
                tokens,
            });
            record.status = Status::connected(ACCOUNT, now);
            Some(record)
        })
        .await
        .expect("serve");
    keys.into_iter()
        .map(|k| k.key.expose().to_owned())
        .collect()
}

fn outcome_name(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Refreshed { .. } => "refreshed",
        Outcome::NotDue => "not_due",
        Outcome::PendingConsent => "pending_consent",
        Outcome::Skipped(_) => "skipped",
        Outcome::BackingOff(_) => "backing_off",
        Outcome::Failed(_) => "failed",
        Outcome::LostRace => "lost_race",
        Outcome::Busy => "busy",
        Outcome::Deferred => "deferred",
        Outcome::WriteQuota(_) => "write_quota",
        Outcome::StoreFailed(_) => "store_failed",
        Outcome::Removed => "removed",
    }
}

/// The schedule's rate.
const SCHEDULE_EVERY: Duration = Duration::from_secs(5 * 60);
/// The simulation's step: displays and passes act at these moments.
const STEP: time::Duration = time::Duration::seconds(10);

/// Runs the simulated day. The calls of the setup (adding and consenting
/// the fleet) are not counted.
pub async fn simulate(options: &FleetOptions) -> FleetReport {
    let dir = tempfile::tempdir().expect("temp dir");
    let start = OffsetDateTime::now_utc();
    let clock = Arc::new(ManualClock::new(start));
    let store: Arc<dyn SecretStore> = match options.store {
        FleetStore::File => Arc::new(FileStore::open(dir.path()).expect("file store")),
        FleetStore::FileCountingVersions => Arc::new(
            FileStore::open(dir.path())
                .and_then(FileStore::count_versions)
                .expect("file store"),
        ),
        FleetStore::SecretsManager => Arc::new(SecretsManagerStore::new(
            crate::moto_client(None).await,
            &format!("{}/", crate::unique_id("fleet")),
        )),
    };
    let log = Arc::new(CallLog::new(store.clone(), clock.clone()));
    // Looks at the store without being counted, to judge failed reads.
    let uncounted = Repository::new(store);
    let mut config = Config::new(match options.store {
        FleetStore::File => roomtoken::store::StoreSpec::File(dir.path().to_owned()),
        _ => roomtoken::store::StoreSpec::Aws,
    });
    config.refresh_budget = options.pass_budget;
    // One refresh at a time, so that the simulated clock sees each write
    // when the pacer lets it go.
    config.refresh_concurrency = 1;
    // The fake answers in milliseconds: a request's worst case is short,
    // and the pass starts requests until a second before its deadline.
    config.http_timeout = Duration::from_secs(1);
    let identity_client =
        roomtoken::identity::OAuthClient::new(config.http_timeout).expect("client");
    let broker = Broker::new(log.clone(), Arc::new(identity_client), config)
        .with_clock(clock.clone())
        .with_sleeper(Arc::new(SimulatedSleeper(clock.clone())));
    let behaviours: Vec<Behaviour> = options.connections.keys().copied().collect();
    let fakes = identities(&behaviours, options.token_lifetime).await;

    let mut fleet = Vec::new();
    let mut n = 0usize;
    for (&behaviour, &count) in &options.connections {
        for _ in 0..count {
            let id = ConnectionId::parse(&format!("fleet-{n:05}")).expect("id");
            // Spread over the token lifetime, as consents made at different
            // times are.
            let lifetime = options.token_lifetime.as_secs();
            let expires_in = options.all_due_in.unwrap_or(Duration::from_secs(
                lifetime / 3 + (n as u64 * 7 * 60) % (lifetime * 2 / 3).max(1),
            ));
            let keys = add_consented(
                &broker,
                &fakes[&behaviour],
                &id,
                options.displays_per_connection,
                start,
                expires_in,
            )
            .await;
            let next_reads = vec![start; keys.len()];
            fleet.push(Connection {
                id,
                behaviour,
                keys,
                next_reads,
            });
            n += 1;
        }
    }
    // Only the day itself is counted.
    let setup_calls = log.calls().len();

    let mut report = FleetReport {
        connections: fleet.len(),
        hours: options.hours,
        calls: Vec::new(),
        refreshes: 0,
        reads_served: 0,
        reads_failed_with_a_valid_token: 0,
        healthy_reads_without_token: 0,
        outcomes: BTreeMap::new(),
        person_writes_refused: 0,
        healthy_reads: 0,
        passes: 0,
        states: BTreeMap::new(),
    };
    let end = start + time::Duration::hours(i64::from(options.hours));
    let mut next_pass = start;
    let mut next_churn = start;
    let mut next_cold_start = options.refresh_cold_start_every.map(|every| start + every);
    let mut step = start;
    while step < end {
        if clock.now() < step {
            clock.advance((step - clock.now()).try_into().unwrap_or_default());
        }
        if let Some(at) = next_cold_start
            && step >= at
        {
            broker.surveys.clear();
            next_cold_start = options.refresh_cold_start_every.map(|every| at + every);
        }
        if step >= next_pass {
            keep_failing(&fakes);
            report.passes += 1;
            log.set_pass(report.passes);
            let pass = refresh_pass(&broker, &PassOptions::default(), clock.now())
                .await
                .expect("pass");
            log.set_pass(0);
            for result in &pass.results {
                *report
                    .outcomes
                    .entry(outcome_name(&result.outcome))
                    .or_default() += 1;
                if let Some(state) = result.state {
                    *report.states.entry(state.to_string()).or_default() += 1;
                }
            }
            report.refreshes += pass.count(|o| matches!(o, Outcome::Refreshed { .. }));
            next_pass = match options.pass_every {
                Some(Duration::ZERO) => {
                    clock.now() + next_pass_in(&broker, &pass, SCHEDULE_EVERY, clock.now())
                }
                every => next_pass + every.unwrap_or(SCHEDULE_EVERY),
            };
        }
        if let Some(every) = options.key_churn_every_minutes
            && step >= next_churn
            && let Some(first) = fleet.first()
        {
            let now = clock.now();
            match admin::create_key(&broker, &first.id, Some("churn".into()), now).await {
                Ok(key) => {
                    let revoked = admin::revoke_key(&broker, &first.id, &key.id, now).await;
                    if revoked.is_err() {
                        report.person_writes_refused += 1;
                    }
                }
                Err(_) => report.person_writes_refused += 1,
            }
            next_churn += time::Duration::minutes(i64::from(every));
        }
        for connection in &mut fleet {
            for (key, next) in connection.keys.iter().zip(connection.next_reads.iter_mut()) {
                let now = clock.now();
                if *next > now {
                    continue;
                }
                let request = TokenRequest {
                    connection: connection.id.as_str(),
                    key: Some(key),
                    ..TokenRequest::default()
                };
                if connection.behaviour == Behaviour::Healthy {
                    report.healthy_reads += 1;
                }
                let wait = match read_token(&broker, request, now).await {
                    Ok(reply) => {
                        report.reads_served += 1;
                        Duration::from_secs(reply.max_age.max(60))
                    }
                    Err(error) => {
                        let servable = stored_token_servable(&uncounted, &connection.id, now).await;
                        if servable {
                            report.reads_failed_with_a_valid_token += 1;
                        }
                        if connection.behaviour == Behaviour::Healthy {
                            report.healthy_reads_without_token += 1;
                        }
                        match error {
                            ReadError::NotServing { retry_after, .. } => retry_after,
                            _ => Duration::from_secs(60),
                        }
                    }
                };
                *next = now + options.displays.every().unwrap_or(wait);
            }
        }
        step += STEP;
    }
    report.calls = log.calls().split_off(setup_calls);
    drop(dir);
    report
}

/// Whether the connection's state serves tokens and its stored default
/// token was still servable: a read refused then is a read lost.
async fn stored_token_servable(repo: &Repository, id: &ConnectionId, now: OffsetDateTime) -> bool {
    let Ok(Some(serve)) = repo.serve(id).await else {
        return false;
    };
    let serve = serve.value;
    let Some(access) = &serve.access else {
        return false;
    };
    serve.status.state.serves_tokens()
        && access
            .resource_name(None)
            .and_then(|name| access.get(name))
            .is_some_and(|token| token.remaining(now) >= MIN_SERVE_VALIDITY)
}
