//! `lanes serve` put together: the configuration (flags and an optional TOML file), the store in
//! the data directory, the repositories, the ref watcher, the lease ticker, the built-in agent
//! and the HTTP server, and a graceful stop on SIGINT or SIGTERM.

use crate::forge::{Forge, ForgeConfig, LOCAL_AGENT};
use crate::local::LocalLink;
use jiff::Timestamp;
use lanes_core::schedule;
use lanes_git::Repo;
use lanes_store::{NewRepo, SqliteStore, Store, StoreError};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The default address of the API.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// How long open connections get to end once the server is told to stop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The default time between two reads of the repositories' refs.
pub const DEFAULT_POLL: Duration = Duration::from_secs(10);

/// A repository to watch.
#[derive(Clone, Debug, PartialEq)]
pub struct RepoConfig {
    /// Its name [default: the directory's name without `.git`].
    pub name: Option<String>,
    /// The local git repository, bare or not.
    pub path: PathBuf,
    /// A URL to `git fetch` the branches from before each read of the refs.
    pub remote: Option<String>,
    /// The branch merge-bases are taken against [default: the repository's `HEAD` branch,
    /// else `main`].
    pub default_branch: Option<String>,
    /// Limits for its steps that set none [default: the agent's].
    pub limits: Option<lanes_core::catalog::Limits>,
    /// Its secrets, by name.
    pub secrets: std::collections::BTreeMap<String, crate::secrets::Secret>,
}

/// The built-in agent.
#[derive(Clone, Debug)]
pub struct LocalAgentConfig {
    /// Jobs it runs at once.
    pub capacity: u32,
    /// Its labels.
    pub labels: Vec<String>,
    /// The step cache and lane directories (`lanes run`'s cache directory).
    pub cache_dir: PathBuf,
    /// Run steps behind the sandbox (docs/security.md); `false` only for trusted code.
    pub sandbox: bool,
    /// Who steps run as [default when root: [`lanes_exec::StepUser::default_for_root`]].
    pub step_user: Option<lanes_exec::StepUser>,
    /// Directories under hidden ones that steps may read and run (toolchains).
    pub expose: Vec<PathBuf>,
    /// Limits for steps that set none, unless their repository's `limits` say otherwise.
    pub limits: lanes_core::catalog::Limits,
    /// More directories steps may not see: the data directory, the configuration's directory.
    pub hide: Vec<PathBuf>,
}

/// Everything `lanes serve` needs.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Where the database and the logs live.
    pub data_dir: PathBuf,
    /// The API's address.
    pub listen: String,
    /// The repositories to watch.
    pub repos: Vec<RepoConfig>,
    /// Time between two reads of the refs.
    pub poll_interval: Duration,
    /// The built-in agent, unless turned off.
    pub local_agent: Option<LocalAgentConfig>,
    /// Answer reads without a token.
    pub public_read: bool,
    /// Heartbeat and lease timings.
    pub schedule: schedule::Config,
    /// The HTTP server's limits and timeouts.
    pub http: crate::http::HttpConfig,
}

/// The configuration file (`--config`): every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConfigFile {
    /// The API's address.
    pub listen: Option<String>,
    /// Where the database and the logs live.
    pub data_dir: Option<PathBuf>,
    /// Time between two reads of the refs (`10s`).
    pub poll_interval: Option<String>,
    /// Answer reads without a token.
    pub public_read: Option<bool>,
    /// How often agents heartbeat (`10s`).
    pub heartbeat: Option<String>,
    /// How long a lease lasts without a heartbeat (`30s`).
    pub lease: Option<String>,
    /// The built-in agent.
    pub agent: Option<AgentFile>,
    /// The HTTP server's limits and timeouts.
    pub http: Option<HttpFile>,
    /// The repositories.
    #[serde(default)]
    pub repo: Vec<RepoFile>,
}

/// `[agent]` in the configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AgentFile {
    /// Run the built-in agent [default: true].
    pub enabled: Option<bool>,
    /// Jobs it runs at once [default: the number of cores].
    pub capacity: Option<u32>,
    /// Its labels [default: the OS and the architecture, `linux` and `x86_64`].
    pub labels: Option<Vec<String>>,
    /// Run steps behind the sandbox [default: true; false only for trusted code].
    pub sandbox: Option<bool>,
    /// Who steps run as: a user name, UID or UID:GID.
    pub step_user: Option<String>,
    /// Directories under hidden ones that steps may read and run (toolchains).
    pub step_expose: Option<Vec<PathBuf>>,
    /// Limits for steps that set none: `{ memory = "4G", pids = 4096, cpus = 2 }`.
    pub limits: Option<LimitsFile>,
}

/// `[http]` in the configuration file: durations such as `10s`, sizes such as `32K`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HttpFile {
    /// From a head's first byte to its end [default: 10s].
    pub header_timeout: Option<String>,
    /// From a request's start to the end of its body [default: 30s].
    pub body_timeout: Option<String>,
    /// A connection with no request on it is closed after this long [default: 120s].
    pub idle_timeout: Option<String>,
    /// Open connections at once [default: 1024].
    pub max_connections: Option<usize>,
    /// Requests in flight at once [default: 256].
    pub max_requests: Option<usize>,
    /// The longest request head [default: 32K, at most 64K].
    pub max_header_bytes: Option<String>,
    /// The largest request body [default: 1M].
    pub max_body_bytes: Option<String>,
}

/// `limits = { ... }` in the configuration file, as in the catalog.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    /// Memory, such as `4G`.
    pub memory: Option<String>,
    /// Processes and threads.
    pub pids: Option<u64>,
    /// CPUs' worth of time.
    pub cpus: Option<f64>,
}

impl LimitsFile {
    /// The limits, or what is wrong with them.
    pub fn limits(&self) -> Result<lanes_core::catalog::Limits, String> {
        let memory = match &self.memory {
            Some(text) => Some(
                lanes_core::catalog::parse_size(text)
                    .filter(|b| *b >= 1 << 20)
                    .ok_or_else(|| format!("memory `{text}` is not a size of at least 1M"))?,
            ),
            None => None,
        };
        if self.pids == Some(0) {
            return Err("pids must be at least 1".to_owned());
        }
        if self.cpus.is_some_and(|c| !(c >= 0.01 && c.is_finite())) {
            return Err("cpus must be at least 0.01".to_owned());
        }
        Ok(lanes_core::catalog::Limits {
            memory,
            pids: self.pids,
            cpus: self.cpus,
        })
    }
}

/// `[[repo]]` in the configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RepoFile {
    /// Its name.
    pub name: Option<String>,
    /// The local repository (relative paths are relative to the configuration file).
    pub path: PathBuf,
    /// A URL to fetch from before each read of the refs.
    pub remote: Option<String>,
    /// The default branch.
    pub default_branch: Option<String>,
    /// Limits for its steps that set none.
    pub limits: Option<LimitsFile>,
    /// Its secrets: `[repo.secrets.NAME]` with `value`, `file` or `env`, and `branches`.
    #[serde(default)]
    pub secrets: std::collections::BTreeMap<String, crate::secrets::SecretFile>,
}

impl ConfigFile {
    /// Reads and checks the configuration file at `path`.
    pub fn read(path: &Path) -> Result<ConfigFile, ServeError> {
        let text = std::fs::read_to_string(path).map_err(|e| ServeError::Config {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let mut file: ConfigFile = toml::from_str(&text).map_err(|e| ServeError::Config {
            path: path.to_owned(),
            // The full message quotes the line, which may hold a secret's value.
            message: if text.contains("secrets") {
                let line = e.span().map(|s| {
                    let before = &text.as_bytes()[..s.start.min(text.len())];
                    before.iter().filter(|b| **b == b'\n').count() + 1
                });
                match line {
                    Some(n) => format!("line {n}: {}", e.message()),
                    None => e.message().to_owned(),
                }
            } else {
                e.to_string()
            },
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for repo in &mut file.repo {
            if repo.path.is_relative() {
                repo.path = base.join(&repo.path);
            }
            for secret in repo.secrets.values_mut() {
                secret.rebase(base);
            }
        }
        Ok(file)
    }
}

/// `lanes serve` could not start or stopped on an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration file is unreadable or invalid.
    #[error("invalid configuration file {}: {message}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A repository cannot be watched.
    #[error("cannot watch {}: {message}", path.display())]
    Repo {
        /// The repository.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The data directory or the database cannot be used.
    #[error("cannot use the data directory {}: {message}", path.display())]
    Data {
        /// The directory.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The address cannot be listened on.
    #[error("cannot listen on {addr}: {message}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        message: String,
    },
    /// Steps cannot be put behind the sandbox, and the forge was not told to run them without.
    #[error(
        "cannot run steps behind the sandbox: {0}\n  help: see docs/security.md for what the \
         sandbox needs; --no-sandbox runs steps unsandboxed, only for trusted code"
    )]
    Sandbox(String),
    /// The forge failed.
    #[error(transparent)]
    Forge(#[from] crate::ForgeError),
}

/// The name of a repository at `path`: its directory's name without `.git`.
pub fn repo_name(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "repo".to_owned());
    match name.strip_suffix(".git") {
        Some(stem) if !stem.is_empty() => stem.to_owned(),
        _ => name,
    }
}

/// The labels of this host: its OS and architecture.
pub fn host_labels() -> Vec<String> {
    vec![
        std::env::consts::OS.to_owned(),
        std::env::consts::ARCH.to_owned(),
    ]
}

/// Checks every configured repository is a git repository and names it, before anything is
/// written.
fn check_repos(repos: &[RepoConfig]) -> Result<Vec<NewRepo>, ServeError> {
    let mut out: Vec<NewRepo> = Vec::new();
    for repo in repos {
        let path = std::path::absolute(&repo.path).unwrap_or_else(|_| repo.path.clone());
        let path = path.canonicalize().unwrap_or(path);
        let git = Repo::discover(&path).map_err(|e| ServeError::Repo {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let default_branch = match &repo.default_branch {
            Some(b) => b.clone(),
            None => git
                .default_branch()
                .ok()
                .flatten()
                .unwrap_or_else(|| "main".to_owned()),
        };
        let name = repo.name.clone().unwrap_or_else(|| repo_name(&path));
        if let Some(twin) = out.iter().find(|r| r.name == name && r.path != path) {
            return Err(ServeError::Repo {
                path,
                message: format!(
                    "the name `{name}` is also given to {}; name one of them in the \
                     configuration file",
                    twin.path.display()
                ),
            });
        }
        out.push(NewRepo {
            name,
            path,
            remote_url: repo.remote.clone(),
            default_branch,
        });
    }
    Ok(out)
}

/// Registers the checked repositories (a name the store has for another path is an error).
async fn add_repos(store: &SqliteStore, repos: &[NewRepo]) -> Result<(), ServeError> {
    for new in repos {
        match store.add_repo(new, Timestamp::now()).await {
            Ok(_) => {}
            Err(StoreError::Duplicate(_)) => {
                let existing = store
                    .repo(&new.name)
                    .await
                    .map_err(crate::ForgeError::from)?;
                if existing.path != new.path {
                    return Err(ServeError::Repo {
                        path: new.path.clone(),
                        message: format!(
                            "the name `{}` is already taken by {}; name it differently in the \
                             configuration file",
                            new.name,
                            existing.path.display()
                        ),
                    });
                }
                // The configuration (or the repository's HEAD) may have changed since the
                // repository was added: the default branch and the remote follow it.
                if existing.default_branch != new.default_branch
                    || existing.remote_url != new.remote_url
                {
                    tracing::info!(
                        "repository {}: default branch {}, remote {}",
                        new.name,
                        new.default_branch,
                        new.remote_url.as_deref().unwrap_or("none")
                    );
                    store
                        .update_repo(&new.name, &new.default_branch, new.remote_url.as_deref())
                        .await
                        .map_err(crate::ForgeError::from)?;
                }
            }
            Err(e) => return Err(crate::ForgeError::from(e).into()),
        }
    }
    Ok(())
}

/// Runs the forge until SIGINT or SIGTERM. `say` prints what a person starting it must see
/// (the admin token, once; the address).
pub async fn serve(config: ServeConfig, say: impl Fn(&str)) -> Result<(), ServeError> {
    let data_error = |message: String| ServeError::Data {
        path: config.data_dir.clone(),
        message,
    };
    let repos = check_repos(&config.repos)?;
    std::fs::create_dir_all(&config.data_dir).map_err(|e| data_error(e.to_string()))?;
    let store = SqliteStore::open(&config.data_dir.join("lanes.db"))
        .await
        .map_err(|e| data_error(e.to_string()))?;
    if let Some(token) = store
        .ensure_admin_token(Timestamp::now())
        .await
        .map_err(|e| data_error(e.to_string()))?
    {
        say(&format!(
            "admin token (shown once, only its hash is stored): {token}\n  export \
             LANES_TOKEN={token}\n"
        ));
    }
    add_repos(&store, &repos).await?;
    let forge = Forge::open(
        store.clone(),
        ForgeConfig {
            data_dir: config.data_dir.clone(),
            schedule: config.schedule,
            public_read: config.public_read,
            secrets: (config.repos.iter().zip(&repos))
                .filter(|(config, _)| !config.secrets.is_empty())
                .map(|(config, repo)| (repo.name.clone(), config.secrets.clone()))
                .collect(),
        },
    )
    .await?;

    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|e| ServeError::Listen {
            addr: config.listen.clone(),
            message: e.to_string(),
        })?;
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| config.listen.clone());
    // Only the configured repositories are watched; others the database remembers stay readable.
    let watched: Vec<String> = repos.iter().map(|r| r.name.clone()).collect();
    forge.set_watched(watched.iter().cloned());
    if let Some(warning) = crate::http::check_open_files(&config.http) {
        say(&warning);
    }
    say(&format!(
        "lanes serve: listening on http://{addr}; watching {} {}; data in {}\n",
        repos.len(),
        if repos.len() == 1 {
            "repository"
        } else {
            "repositories"
        },
        config.data_dir.display()
    ));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(watch_refs(
        Arc::clone(&forge),
        watched.clone(),
        config.poll_interval,
        stop_rx.clone(),
    ));
    tasks.spawn(tick(Arc::clone(&forge), stop_rx.clone()));
    tasks.spawn(nightly(Arc::clone(&forge), watched, stop_rx.clone()));
    if let Some(agent) = &config.local_agent {
        let labels: BTreeSet<String> = agent.labels.iter().cloned().collect();
        forge
            .agent_online(LOCAL_AGENT, labels.clone(), agent.capacity)
            .await;
        let limits = (config.repos.iter().zip(&repos))
            .filter_map(|(config, repo)| Some((repo.name.clone(), config.limits?)))
            .collect();
        spawn_local_agent(&mut tasks, &forge, agent, limits, &say, stop_rx.clone())?;
    }

    let app = crate::api::router(Arc::clone(&forge));
    let server = crate::http::serve(
        listener,
        app,
        config.http.clone(),
        forge.metrics().http(),
        stop_rx.clone(),
    );
    let signals = async {
        shutdown_signal().await;
        say("lanes serve: stopping\n");
        let _ = stop_tx.send(true);
    };
    let server = tokio::spawn(server);
    signals.await;
    // Open event streams (`lanes logs --follow`) would hold a graceful stop forever: they get a
    // few seconds to end, then the server stops without them.
    match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
        Ok(Err(e)) => tracing::error!("the HTTP server failed: {e}"),
        Ok(Ok(())) => {}
        Err(_) => tracing::warn!("stopping with connections still open"),
    }
    while tasks.join_next().await.is_some() {}
    // The built-in agent stopped its steps: its jobs go back to the queue now, without using an
    // attempt, so the next start can tell this stop from a crash.
    if config.local_agent.is_some() {
        match forge.hand_back(LOCAL_AGENT).await {
            Ok(0) => {}
            Ok(n) => tracing::info!("{n} running jobs handed back to the queue"),
            Err(e) => tracing::warn!(
                "the running jobs could not be handed back ({e}): the next start requeues them \
                 as attempts"
            ),
        }
    }
    if let Err(e) = store.close().await {
        tracing::warn!("the database's log was not folded into its file on closing: {e}");
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Reads the watched repositories' refs every `interval` (fetching mirrors first).
async fn watch_refs<S: Store + 'static>(
    forge: Arc<Forge<S>>,
    watched: Vec<String>,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    // Per repository, the failure last logged.
    let mut failing: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    loop {
        for name in &watched {
            let repo = match forge.store().repo(name).await {
                Ok(repo) => repo,
                Err(e) => {
                    tracing::warn!("reading repository {name} failed: {e}");
                    continue;
                }
            };
            if let Some(remote) = repo.remote_url.clone() {
                let path = repo.path.clone();
                let fetched =
                    tokio::task::spawn_blocking(move || lanes_git::fetch_branches(&path, &remote))
                        .await;
                if let Ok(Err(e)) = fetched {
                    tracing::warn!("git fetch of {name} failed: {e}");
                }
            }
            match forge.poll_repo(name).await {
                Ok(_) => {
                    if failing.remove(name).is_some() {
                        tracing::info!("reading the refs of {name} works again");
                    }
                }
                Err(e) if forge.full_disk(&e) => {}
                Err(e) => {
                    // Said once, and again only when it changes: the same failure at every
                    // poll would bury everything else in the log.
                    let said = e.to_string();
                    if failing.get(name) != Some(&said) {
                        tracing::warn!("reading the refs of {name} failed: {said}");
                        failing.insert(name.clone(), said);
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Ends expired leases when they expire and refreshes waiting reasons about once a second.
async fn tick<S: Store + 'static>(
    forge: Arc<Forge<S>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let next = match forge.tick().await {
            Ok(next) => next,
            Err(e) => {
                if !forge.full_disk(&e) {
                    tracing::warn!("the lease ticker failed: {e}");
                }
                None
            }
        };
        let now = crate::forge::millis(Timestamp::now());
        let wait = next
            .map(|at| at.saturating_sub(now))
            .unwrap_or(1000)
            .clamp(10, 1000);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Creates nightly runs when their cron slots come (and at start, for slots missed while the
/// server was down). Looks again at least every minute, so a catalog change on the default branch
/// is picked up.
async fn nightly<S: Store + 'static>(
    forge: Arc<Forge<S>>,
    watched: Vec<String>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let next = forge.nightly_tick(&watched).await;
        let now = Timestamp::now();
        let wait = next
            .map(|at| (at.as_millisecond() - now.as_millisecond()).max(0) as u64)
            .unwrap_or(60_000)
            .clamp(100, 60_000);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Starts the built-in agent on `tasks`: it leases through the same [`lanes_agent::Link`] a
/// remote agent uses, and stops (its steps killed, nothing reported) when `stop` is raised.
fn spawn_local_agent<S: Store + 'static>(
    tasks: &mut tokio::task::JoinSet<()>,
    forge: &Arc<Forge<S>>,
    agent: &LocalAgentConfig,
    repo_limits: std::collections::BTreeMap<String, lanes_core::catalog::Limits>,
    say: &impl Fn(&str),
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), ServeError> {
    let sandbox = if agent.sandbox {
        Some(sandbox(agent, say)?)
    } else {
        say(
            "warning: steps run WITHOUT the sandbox (--no-sandbox): any step can read and \
             change the forge's data, tokens and other jobs; use this only with trusted code\n",
        );
        None
    };
    let mut env = lanes_agent::AgentEnv::open(agent.cache_dir.clone(), sandbox).map_err(|e| {
        ServeError::Data {
            path: agent.cache_dir.clone(),
            message: format!("the built-in agent cannot use its cache directory: {e}"),
        }
    })?;
    env.limits = repo_limits;
    let config = lanes_agent::AgentConfig {
        env,
        capacity: agent.capacity as usize,
        lease_wait: lanes_agent::agent::DEFAULT_LEASE_WAIT,
    };
    let link = Arc::new(LocalLink::new(Arc::clone(forge), LOCAL_AGENT));
    let shutdown = lanes_agent::Shutdown::new();
    let trigger = shutdown.clone();
    tasks.spawn(async move {
        let _ = stop.wait_for(|s| *s).await;
        trigger.trigger();
    });
    tasks.spawn(lanes_agent::run_agent(link, config, shutdown));
    Ok(())
}

/// The step sandbox of the built-in agent (each job adds its repository to what it hides), or
/// why the forge cannot make one: it does not run untrusted steps unsandboxed unless told to.
fn sandbox(
    agent: &LocalAgentConfig,
    say: &impl Fn(&str),
) -> Result<lanes_exec::Sandbox, ServeError> {
    let refuse = |why: String| ServeError::Sandbox(why);
    let helper = std::env::current_exe()
        .map_err(|e| refuse(format!("cannot find the lanes binary: {e}")))?;
    let mut hide = vec![agent.cache_dir.clone()];
    hide.extend(agent.hide.iter().cloned());
    // The forge user's home holds its tokens and credentials; toolchains come back through
    // `step-expose`.
    if let Some(home) = std::env::var_os("HOME").map(PathBuf::from)
        && home.parent().is_some()
    {
        hide.push(home);
    }
    let root = lanes_exec::sandbox::is_root();
    let user = match agent.step_user {
        Some(user) if !root => {
            return Err(refuse(format!(
                "--step-user {}:{} needs the forge to run as root",
                user.uid, user.gid
            )));
        }
        Some(user) => Some(user),
        None if root => Some(lanes_exec::StepUser::default_for_root()),
        None => {
            say(
                "warning: steps run as the forge's own user (not root, so no --step-user), \
                 behind namespaces only; run the forge as root with --step-user for a separate \
                 identity (docs/security.md)\n",
            );
            None
        }
    };
    if user.is_some_and(|u| u.uid == 0) {
        return Err(refuse(
            "the step user is root; give an unprivileged user with --step-user".to_owned(),
        ));
    }
    let sandbox = lanes_exec::Sandbox {
        expose: agent.expose.clone(),
        user,
        limits: agent.limits,
        ..lanes_exec::Sandbox::new(helper, hide)
    };
    if let Some(why) = sandbox.unreachable(&agent.cache_dir) {
        return Err(refuse(format!(
            "the step user cannot reach the cache directory {}, where lane directories live: \
             {why}; make the way searchable (chmod o+x) or use another cache directory \
             (LANES_CACHE_DIR)",
            agent.cache_dir.display()
        )));
    }
    let fitted = sandbox.fit().map_err(refuse)?;
    for lost in &fitted.lost {
        say(&format!("warning: the step sandbox has {lost}\n"));
    }
    if let Some(why) = &fitted.cgroups {
        say(&format!(
            "warning: no cgroups for steps ({why}): `limits` are not enforced and no step ends \
             oom-killed\n"
        ));
    }
    Ok(fitted.sandbox)
}
