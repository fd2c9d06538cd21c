//! [`PostgresOptions`]: the connection string, the table, the pool and statement settings.

pub(crate) mod conninfo;
pub(crate) mod tls;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use checkpoint_core::retention::RetentionSchedule;
use checkpoint_core::{Error, Limits, Result};
use deadpool_postgres::RecyclingMethod;
use tokio_postgres::config::Host;
use tokio_postgres::Config;

use checkpoint_format::sealing::Encryption;
use rustls::pki_types::CertificateDer;

use crate::options::conninfo::split_own_parameters;
use crate::options::tls::{parse_certificates, SslMode};
use crate::retry::RetryPolicy;
use crate::schema::layout::TableLayout;
use crate::schema::table::TableName;
use crate::state::encoding::StateEncoding;
use crate::state::payload::Compression;
use crate::store::group::settings::GroupCommit;

/// How to reach PostgreSQL and how the store uses it.
///
/// The connection string is either `key=value` pairs or a `postgres://` URL. Pool settings may
/// ride along as `pool_max_conns`, `pool_min_conns`, `pool_max_conn_lifetime` and
/// `pool_max_conn_idle_time` (durations such as `30m` or `1h 30m`); they are removed before the
/// string reaches the driver. No timeout is infinite by default. `Debug` never shows the
/// password.
///
/// ```
/// use std::time::Duration;
/// use checkpoint_postgres::PostgresOptions;
///
/// let options = PostgresOptions::new(
///     "postgres://app:secret@db.internal/app?pool_max_conns=32&pool_max_conn_lifetime=30m",
/// )?
/// .table("workflow_checkpoints")
/// .schema("agents")
/// .wait_timeout(Duration::from_secs(2));
/// assert_eq!(options.pool_max_size(), 32);
/// assert!(!format!("{options:?}").contains("secret"));
/// # Ok::<(), checkpoint_core::Error>(())
/// ```
#[derive(Clone)]
pub struct PostgresOptions {
    config: Config,
    table: String,
    schema: Option<String>,
    layout: TableLayout,
    partitions_ahead: u16,
    partition_upkeep: bool,
    auto_migrate: bool,
    max_size: usize,
    min_idle: usize,
    wait_timeout: Duration,
    create_timeout: Duration,
    recycle_timeout: Duration,
    max_lifetime: Option<Duration>,
    max_idle_time: Option<Duration>,
    recycling: RecyclingMethod,
    statement_cache: bool,
    limits: Limits,
    retry: RetryPolicy,
    ssl_mode: SslMode,
    root_certificates: Vec<CertificateDer<'static>>,
    synchronous_commit: bool,
    encoding: StateEncoding,
    compression: Compression,
    state_cache_bytes: usize,
    min_delta_bytes: usize,
    group_commit: GroupCommit,
    encryption: Option<Encryption>,
    retention: Option<RetentionSchedule>,
    notify: bool,
    refuse_unleased: bool,
}

impl PostgresOptions {
    /// Default budget of the state cache: 64 MiB.
    pub const DEFAULT_STATE_CACHE_BYTES: usize = 64 * 1024 * 1024;
    /// Default smallest state stored as a delta: 2 KiB.
    pub const DEFAULT_MIN_DELTA_BYTES: usize = 2048;
    /// Default table name.
    pub const DEFAULT_TABLE: &'static str = "checkpoints";
    /// The default of [`partitions_ahead`](Self::partitions_ahead).
    pub const DEFAULT_PARTITIONS_AHEAD: u16 = 2;
    /// Default pool size.
    pub const DEFAULT_MAX_SIZE: usize = 16;
    /// Default for the wait, create and recycle timeouts.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    /// Parses a connection string and takes out the pool parameters.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming `connection_string` for a malformed string, or the pool
    /// parameter at fault.
    pub fn new(connection_string: &str) -> Result<Self> {
        let (driver_string, own_params) = split_own_parameters(connection_string)?;
        let mut config = Config::from_str(&driver_string)
            .map_err(|e| Error::invalid("connection_string", format!("cannot be parsed: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Self::DEFAULT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("checkpoint");
        }
        let mut options = PostgresOptions {
            config,
            table: Self::DEFAULT_TABLE.to_owned(),
            layout: TableLayout::Plain,
            partitions_ahead: Self::DEFAULT_PARTITIONS_AHEAD,
            partition_upkeep: true,
            schema: None,
            auto_migrate: true,
            max_size: Self::DEFAULT_MAX_SIZE,
            min_idle: 0,
            wait_timeout: Self::DEFAULT_TIMEOUT,
            create_timeout: Self::DEFAULT_TIMEOUT,
            recycle_timeout: Self::DEFAULT_TIMEOUT,
            max_lifetime: None,
            max_idle_time: None,
            recycling: RecyclingMethod::Fast,
            statement_cache: true,
            limits: Limits::default(),
            retry: RetryPolicy::default(),
            ssl_mode: SslMode::default(),
            root_certificates: Vec::new(),
            synchronous_commit: true,
            encoding: StateEncoding::default(),
            compression: Compression::default(),
            state_cache_bytes: Self::DEFAULT_STATE_CACHE_BYTES,
            min_delta_bytes: Self::DEFAULT_MIN_DELTA_BYTES,
            group_commit: GroupCommit::default(),
            encryption: None,
            retention: None,
            notify: false,
            refuse_unleased: false,
        };
        for (key, value) in own_params {
            options.apply_parameter(&key, &value)?;
        }
        options.config.ssl_mode(options.ssl_mode.driver_mode());
        if options.min_idle > options.max_size {
            return Err(Error::invalid(
                "pool_min_conns",
                format!(
                    "{} is more than pool_max_conns ({})",
                    options.min_idle, options.max_size
                ),
            ));
        }
        Ok(options)
    }

    fn apply_parameter(&mut self, key: &str, value: &str) -> Result<()> {
        let count = || {
            value
                .parse::<usize>()
                .map_err(|_| Error::invalid(key, format!("{value:?} is not a whole number")))
        };
        let duration = || {
            humantime::parse_duration(value)
                .map_err(|e| Error::invalid(key, format!("{value:?} is not a duration: {e}")))
        };
        let switch = || match value {
            "on" | "true" | "1" => Ok(true),
            "off" | "false" | "0" => Ok(false),
            other => Err(Error::invalid(key, format!("{other:?} is not on or off"))),
        };
        match key {
            "pool_max_conns" => {
                let n = count()?;
                if n == 0 {
                    return Err(Error::invalid(key, "must be at least 1"));
                }
                self.max_size = n;
            }
            "pool_min_conns" => self.min_idle = count()?,
            "pool_max_conn_lifetime" => self.max_lifetime = Some(duration()?),
            "pool_max_conn_idle_time" => self.max_idle_time = Some(duration()?),
            "sslmode" => self.ssl_mode = value.parse()?,
            "statement_cache" => self.statement_cache = switch()?,
            "group_commit" => self.group_commit = self.group_commit.enabled(switch()?),
            "group_commit_max_saves" => {
                self.group_commit = self.group_commit.max_saves(count()?);
                self.group_commit.validate()?;
            }
            "state_encoding" => {
                self.encoding = match value {
                    "jsonb" => StateEncoding::Jsonb,
                    "delta" => StateEncoding::Delta {
                        snapshot_every: self
                            .encoding
                            .snapshot_every()
                            .unwrap_or(StateEncoding::DEFAULT_SNAPSHOT_EVERY),
                    },
                    other => {
                        return Err(Error::invalid(
                            key,
                            format!("{other:?} is not jsonb or delta"),
                        ))
                    }
                }
            }
            "snapshot_every" => {
                let every = value
                    .parse::<u32>()
                    .map_err(|_| Error::invalid(key, format!("{value:?} is not a whole number")))?;
                self.encoding = StateEncoding::delta(every)?;
            }
            "compression" => self.compression = value.parse()?,
            "sslrootcert" => {
                let pem = std::fs::read(value)
                    .map_err(|e| Error::invalid(key, format!("{value:?} cannot be read: {e}")))?;
                self.root_certificates = parse_certificates(key, &pem)?;
            }
            _ => unreachable!("only the store's own parameters are split out"),
        }
        Ok(())
    }

    /// The table name (default `checkpoints`); validated on connect.
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// The schema holding the table (default: the connection's search path); created when
    /// missing. Validated on connect.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// How the table is laid out when the migrations create it (default
    /// [`TableLayout::Plain`]); a table made with another layout is refused
    /// ([`SchemaError::Modified`](crate::SchemaError::Modified)).
    ///
    /// A partitioned layout (not the distributed one, which Citus plans) also sets
    /// `plan_cache_mode = force_generic_plan` for the store's
    /// sessions: its prepared statements are then planned once and pruned to one partition at
    /// execution, instead of planned again for every execution id (which made `latest` twice
    /// as slow with 16 partitions). Behind pgbouncer in transaction mode, set it on the role
    /// instead (`ALTER ROLE app SET plan_cache_mode = force_generic_plan`).
    pub fn table_layout(mut self, layout: TableLayout) -> Self {
        self.layout = layout;
        let current = self.config.get_options().unwrap_or("").to_owned();
        let mut options: Vec<&str> = current
            .split_whitespace()
            .filter(|o| *o != "-cplan_cache_mode=force_generic_plan")
            .collect();
        if layout.generic_plans() {
            options.push("-cplan_cache_mode=force_generic_plan");
        }
        self.config.options(options.join(" "));
        self
    }

    /// Applies `schedule` in the background while the store is open (default: none): every
    /// interval, one execution at a time, each pruned in its own short transaction, with a
    /// pause between them (see [`checkpoint_core::retention`]). On a time-partitioned table an
    /// `older_than` rule drops whole partitions instead
    /// ([`drop_partitions_before`](crate::PostgresStore::drop_partitions_before), so it counts
    /// from each execution's start, as that layout's retention always does), and `keep_last`,
    /// when set, is then applied execution by execution. The task ends when the last clone of
    /// the store is dropped or the store is closed. Checked by `connect`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use checkpoint_core::{retention::RetentionSchedule, RetentionPolicy};
    /// use checkpoint_postgres::PostgresOptions;
    ///
    /// let options = PostgresOptions::new("postgres://app@db/app")?.retention(
    ///     RetentionSchedule::new(RetentionPolicy::keep_last(100), Duration::from_secs(600)),
    /// );
    /// assert!(options.retention_schedule().is_some());
    /// # Ok::<(), checkpoint_core::Error>(())
    /// ```
    pub fn retention(mut self, schedule: RetentionSchedule) -> Self {
        self.retention = Some(schedule);
        self
    }

    /// Whether the store announces new checkpoints (default off): after each acknowledged
    /// save, group, batch or fork, one `pg_notify` on the table's channel
    /// ([`PostgresStore::channel`](crate::PostgresStore::channel)) per execution written, so
    /// that [`PostgresStore::listen`](crate::PostgresStore::listen) (and `checkpointctl watch`)
    /// hears of them at once. It costs one more statement per save (per group with group
    /// commit), and PostgreSQL serialises the commits of notifying transactions; off, a
    /// watcher polls.
    pub fn notify(mut self, on: bool) -> Self {
        self.notify = on;
        self
    }

    /// Refuses every unfenced write (save, batch, delete, clear, prune of one execution, fork
    /// into one) of an execution whose lease is unexpired with
    /// [`Error::LeaseHeld`](checkpoint_core::Error::LeaseHeld), checked in the write's own
    /// transaction (default: off; see [`checkpoint_core::lease`]). Unfenced writes then take
    /// the careful path, one transaction of the check and the write (states stored whole),
    /// and do not join group commit; fenced writes are as fast as ever.
    pub fn refuse_unleased_writes(mut self, on: bool) -> Self {
        self.refuse_unleased = on;
        self
    }

    /// Whether [`refuse_unleased_writes`](Self::refuse_unleased_writes) is on.
    pub fn is_refusing_unleased_writes(&self) -> bool {
        self.refuse_unleased
    }

    /// Whether [`notify`](Self::notify) is on.
    pub fn is_notify(&self) -> bool {
        self.notify
    }

    /// The schedule of [`retention`](Self::retention).
    pub fn retention_schedule(&self) -> Option<&RetentionSchedule> {
        self.retention.as_ref()
    }

    /// How many periods past the current one a time-partitioned table
    /// ([`TableLayout::TimePartitioned`]) has partitions for (default 2, at least 1, at most
    /// [`MAX_PARTITIONS_AHEAD`](crate::MAX_PARTITIONS_AHEAD)). The store makes them when it
    /// connects and checks again, before a write, once an hour; a save whose execution's start
    /// has no partition fails. Checked by `connect`.
    pub fn partitions_ahead(mut self, periods: u16) -> Self {
        self.partitions_ahead = periods;
        self
    }

    /// The periods of partitions made ahead; see [`partitions_ahead`](Self::partitions_ahead).
    pub fn partitions_ahead_periods(&self) -> u16 {
        self.partitions_ahead
    }

    /// Whether the store makes a time-partitioned table's partitions itself (default true):
    /// when it connects, and before a write once an hour. Turn it off when a scheduled job
    /// does it (`checkpointctl partitions maintain`) or the store's role may not create
    /// tables; [`PostgresStore::ensure_partitions`](crate::PostgresStore::ensure_partitions)
    /// still works.
    pub fn partition_upkeep(mut self, on: bool) -> Self {
        self.partition_upkeep = on;
        self
    }

    /// Whether the store makes partitions itself; see
    /// [`partition_upkeep`](Self::partition_upkeep).
    pub fn is_partition_upkeep(&self) -> bool {
        self.partition_upkeep
    }

    /// Whether `connect` applies pending migrations (default true). When off, `connect`
    /// refuses a schema that is not current.
    pub fn auto_migrate(mut self, on: bool) -> Self {
        self.auto_migrate = on;
        self
    }

    /// Most connections in the pool (default 16).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_size = n;
        self
    }

    /// Connections opened when the store starts, so the first calls do not pay for them.
    pub fn min_connections(mut self, n: usize) -> Self {
        self.min_idle = n;
        self
    }

    /// How long a call waits for a free connection (default 5 s).
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.wait_timeout = timeout;
        self
    }

    /// How long opening a connection may take (default 5 s).
    pub fn create_timeout(mut self, timeout: Duration) -> Self {
        self.create_timeout = timeout;
        self.config.connect_timeout(timeout);
        self
    }

    /// How long checking a pooled connection may take (default 5 s).
    pub fn recycle_timeout(mut self, timeout: Duration) -> Self {
        self.recycle_timeout = timeout;
        self
    }

    /// Replace connections older than this.
    pub fn max_connection_lifetime(mut self, lifetime: Duration) -> Self {
        self.max_lifetime = Some(lifetime);
        self
    }

    /// Replace connections unused for this long.
    pub fn max_connection_idle_time(mut self, idle: Duration) -> Self {
        self.max_idle_time = Some(idle);
        self
    }

    /// How a pooled connection is checked before reuse (default
    /// [`RecyclingMethod::Fast`]: no round trip; [`RecyclingMethod::Verified`] runs a query).
    pub fn recycling(mut self, method: RecyclingMethod) -> Self {
        self.recycling = method;
        self
    }

    /// Whether statements are prepared once per connection and reused (default true). Turn it
    /// off behind pgbouncer in transaction mode: every statement is then sent unnamed with
    /// its parameter types, in one round trip. Also `statement_cache=off` in the connection
    /// string. Left on behind such a pooler, the store notices the first refused statement and
    /// turns it off itself (with a warning in the log).
    pub fn statement_cache(mut self, on: bool) -> Self {
        self.statement_cache = on;
        self
    }

    /// Input limits (default [`Limits::default`]).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// How transient failures of idempotent operations are retried (default
    /// [`RetryPolicy::default`]; [`RetryPolicy::disabled`] turns retries off).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// How states are stored (default [`StateEncoding::default`]: deltas with a snapshot at
    /// least every 64 versions); also `state_encoding=jsonb|delta` and `snapshot_every=K` in
    /// the connection string. Every encoding reads every other: the option only decides how
    /// new checkpoints are written.
    ///
    /// ```
    /// use checkpoint_postgres::{PostgresOptions, StateEncoding};
    ///
    /// let options = PostgresOptions::new("postgres://localhost/app?snapshot_every=16")?;
    /// assert_eq!(options.encoding(), StateEncoding::Delta { snapshot_every: 16 });
    /// let plain = options.state_encoding(StateEncoding::Jsonb);
    /// assert_eq!(plain.encoding(), StateEncoding::Jsonb);
    /// # Ok::<(), checkpoint_core::Error>(())
    /// ```
    pub fn state_encoding(mut self, encoding: StateEncoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// The state encoding.
    pub fn encoding(&self) -> StateEncoding {
        self.encoding
    }

    /// How delta-encoded states are compressed (default zstd level 3); also
    /// `compression=none|lz4|zstd|zstd:<level>` in the connection string.
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// The compression of delta-encoded states.
    pub fn state_compression(&self) -> Compression {
        self.compression
    }

    /// How many bytes of states this store keeps as bases for its next deltas (default
    /// [`Self::DEFAULT_STATE_CACHE_BYTES`]); 0 keeps none, so every save is a full snapshot.
    pub fn state_cache_bytes(mut self, bytes: usize) -> Self {
        self.state_cache_bytes = bytes;
        self
    }

    /// The smallest state (as compact JSON) that delta storage writes as a delta (default
    /// [`Self::DEFAULT_MIN_DELTA_BYTES`]); smaller ones are compressed snapshots, which cost
    /// the same to save as a whole JSONB state while a delta would save only a few hundred
    /// bytes. 0 writes deltas whatever the size.
    pub fn min_delta_bytes(mut self, bytes: usize) -> Self {
        self.min_delta_bytes = bytes;
        self
    }

    /// The smallest state written as a delta.
    pub fn delta_threshold(&self) -> usize {
        self.min_delta_bytes
    }

    /// The state cache budget.
    pub fn state_cache_budget(&self) -> usize {
        self.state_cache_bytes
    }

    /// Whether and how concurrent saves share one statement and one commit (default
    /// [`GroupCommit::default`]: on); also `group_commit=on|off` and
    /// `group_commit_max_saves=N` in the connection string. Validated on connect.
    pub fn group_commit(mut self, settings: GroupCommit) -> Self {
        self.group_commit = settings;
        self
    }

    /// The group commit settings.
    pub fn group_commit_settings(&self) -> GroupCommit {
        self.group_commit
    }

    /// Encrypts every state this store writes (snapshots and deltas, after compression) with
    /// AES-256-GCM under the write key of `keys`, and reads states sealed under any of its keys.
    /// Metadata stays plain JSONB, so filters keep working: keep secrets out of it. Needs delta
    /// storage (`StateEncoding::Delta`; `StateEncoding::delta(1)` stores every checkpoint
    /// whole); `connect` refuses it with `StateEncoding::Jsonb`. See `docs/postgres.md`,
    /// "Encryption at rest".
    ///
    /// ```
    /// use checkpoint_postgres::{Encryption, EncryptionKey, PostgresOptions};
    ///
    /// let key = EncryptionKey::new("2026-11", &[7u8; 32])?;
    /// let options = PostgresOptions::new("postgres://localhost/app")?
    ///     .encryption(Encryption::new(key));
    /// assert_eq!(options.encryption_keys().unwrap().write_key_id(), "2026-11");
    /// # Ok::<(), checkpoint_core::Error>(())
    /// ```
    pub fn encryption(mut self, keys: Encryption) -> Self {
        self.encryption = Some(keys);
        self
    }

    /// The encryption keys, if encryption is on.
    pub fn encryption_keys(&self) -> Option<&Encryption> {
        self.encryption.as_ref()
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// How the connection is encrypted and the server authenticated (default
    /// [`SslMode::Prefer`], as libpq); also `sslmode=` in the connection string.
    pub fn ssl_mode(mut self, mode: SslMode) -> Self {
        self.ssl_mode = mode;
        self.config.ssl_mode(mode.driver_mode());
        self
    }

    /// Root certificates (PEM) the server's certificate must chain to, instead of the built-in
    /// Mozilla roots; also `sslrootcert=<file>` in the connection string.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming `root_certificates` when `pem` holds no certificate.
    pub fn root_certificates_pem(mut self, pem: &[u8]) -> Result<Self> {
        self.root_certificates = parse_certificates("root_certificates", pem)?;
        Ok(self)
    }

    /// Whether commits wait for the write-ahead log to reach disk (default true).
    ///
    /// `false` sets `synchronous_commit = off` for the store's sessions: a save returns as
    /// soon as the server has it in memory, which makes writes several times faster on slow
    /// disks. The risk, exactly: if the *server* crashes (or its machine loses power), the
    /// saves acknowledged in the last moments before the crash (up to three times
    /// `wal_writer_delay`, 600 ms by default) can be lost. Data is never corrupted, and a crash
    /// of the application loses nothing. Behind pgbouncer in transaction mode, set it on the
    /// role instead (`ALTER ROLE app SET synchronous_commit = off`).
    pub fn synchronous_commit(mut self, on: bool) -> Self {
        let current = self.config.get_options().unwrap_or("").to_owned();
        let kept: Vec<&str> = current
            .split_whitespace()
            .filter(|o| *o != "-csynchronous_commit=off")
            .collect();
        let mut options = kept.join(" ");
        if !on {
            if !options.is_empty() {
                options.push(' ');
            }
            options.push_str("-csynchronous_commit=off");
        }
        self.config.options(&options);
        self.synchronous_commit = on;
        self
    }

    /// Whether commits wait for the disk.
    pub fn is_synchronous_commit(&self) -> bool {
        self.synchronous_commit
    }

    /// The TLS mode.
    pub fn tls_mode(&self) -> SslMode {
        self.ssl_mode
    }

    /// The root certificates given, if any.
    pub fn root_certificates(&self) -> &[CertificateDer<'static>] {
        &self.root_certificates
    }

    /// The validated table name.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming `table` or `schema`.
    pub fn table_name(&self) -> Result<TableName> {
        Ok(TableName::new(self.schema.as_deref(), &self.table)?.with_layout(self.layout))
    }

    /// The driver configuration (pool parameters removed).
    pub fn driver_config(&self) -> &Config {
        &self.config
    }

    /// Whether `connect` migrates.
    pub fn is_auto_migrate(&self) -> bool {
        self.auto_migrate
    }

    /// Most connections in the pool.
    pub fn pool_max_size(&self) -> usize {
        self.max_size
    }

    /// Connections opened at start.
    pub fn pool_min_size(&self) -> usize {
        self.min_idle
    }

    /// The wait, create and recycle timeouts.
    pub fn timeouts(&self) -> (Duration, Duration, Duration) {
        (self.wait_timeout, self.create_timeout, self.recycle_timeout)
    }

    /// The connection lifetime and idle limits.
    pub fn connection_limits(&self) -> (Option<Duration>, Option<Duration>) {
        (self.max_lifetime, self.max_idle_time)
    }

    /// The recycling method.
    pub fn recycling_method(&self) -> &RecyclingMethod {
        &self.recycling
    }

    /// Whether statements are cached per connection.
    pub fn is_statement_cache(&self) -> bool {
        self.statement_cache
    }

    /// The input limits.
    pub fn input_limits(&self) -> Limits {
        self.limits
    }

    /// Checks that the options fit together, without any connection: the table name, the
    /// group commit bounds, encryption with a state encoding that can seal, the partitions
    /// made ahead on a time-partitioned layout, and the retention schedule. `connect` and
    /// `with_pool` run it first, so nothing is created for options it refuses.
    ///
    /// ```
    /// use checkpoint_postgres::{Encryption, EncryptionKey, PostgresOptions, StateEncoding};
    ///
    /// let key = EncryptionKey::new("k1", &[7; 32])?;
    /// let sealed_jsonb = PostgresOptions::new("postgres://app@localhost/app")?
    ///     .state_encoding(StateEncoding::Jsonb)
    ///     .encryption(Encryption::new(key));
    /// assert!(sealed_jsonb.validate().is_err());
    /// # Ok::<(), checkpoint_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the option at fault.
    pub fn validate(&self) -> Result<()> {
        let table = self.table_name()?;
        self.group_commit.validate()?;
        if self.encryption.is_some() && self.encoding == StateEncoding::Jsonb {
            return Err(Error::invalid(
                "state_encoding",
                "encryption needs delta storage: the JSONB column holds states in plain text \
                 (StateEncoding::delta(1) stores every checkpoint whole, encrypted)",
            ));
        }
        if table.layout().period().is_some()
            && !(1..=crate::MAX_PARTITIONS_AHEAD).contains(&self.partitions_ahead)
        {
            return Err(Error::invalid(
                "partitions_ahead",
                format!(
                    "{} periods is outside 1..={}",
                    self.partitions_ahead,
                    crate::MAX_PARTITIONS_AHEAD
                ),
            ));
        }
        if let Some(schedule) = &self.retention {
            schedule.validate(&self.limits)?;
        }
        Ok(())
    }
}

impl fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        f.debug_struct("PostgresOptions")
            .field("hosts", &hosts)
            .field("ports", &self.config.get_ports())
            .field("user", &self.config.get_user())
            .field(
                "password",
                &self.config.get_password().map(|_| "<redacted>"),
            )
            .field("dbname", &self.config.get_dbname())
            .field("table", &self.table)
            .field("schema", &self.schema)
            .field("auto_migrate", &self.auto_migrate)
            .field("max_size", &self.max_size)
            .field("min_idle", &self.min_idle)
            .field("wait_timeout", &self.wait_timeout)
            .field("create_timeout", &self.create_timeout)
            .field("recycle_timeout", &self.recycle_timeout)
            .field("max_lifetime", &self.max_lifetime)
            .field("max_idle_time", &self.max_idle_time)
            .field("recycling", &self.recycling)
            .field("statement_cache", &self.statement_cache)
            .field("limits", &self.limits)
            .field("retry", &self.retry)
            .field("ssl_mode", &self.ssl_mode)
            .field("root_certificates", &self.root_certificates.len())
            .field("synchronous_commit", &self.synchronous_commit)
            .field("encoding", &self.encoding)
            .field("compression", &self.compression)
            .field("state_cache_bytes", &self.state_cache_bytes)
            .field("min_delta_bytes", &self.min_delta_bytes)
            .field("group_commit", &self.group_commit)
            .field("encryption", &self.encryption)
            .field("retention", &self.retention)
            .field("notify", &self.notify)
            .finish()
    }
}

#[cfg(test)]
mod tests;
