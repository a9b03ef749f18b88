//! `lanes serve`: the forge. Flags win over the configuration file; both fall back to defaults
//! that work with no flags at all.

use crate::args::ServeArgs;
use crate::cache_dir::cache_dir;
use crate::error::CliError;
use crate::printer::Printer;
use lanes_core::parse::parse_duration;
use lanes_core::schedule;
use lanes_exec::StepUser;
use lanes_server::http::HttpConfig;
use lanes_server::serve::{
    ConfigFile, DEFAULT_LISTEN, DEFAULT_POLL, HttpFile, LimitsFile, LocalAgentConfig, RepoConfig,
    ServeConfig, host_labels,
};
use std::path::{Path, PathBuf};

fn limits(file: &LimitsFile) -> Result<lanes_core::catalog::Limits, CliError> {
    file.limits().map_err(|why| {
        CliError::usage(
            format!("invalid limits in the configuration file: {why}"),
            "write limits = { memory = \"4G\", pids = 4096, cpus = 2 }".to_owned(),
        )
    })
}
use std::time::Duration;

fn duration(flag: &str, text: &str) -> Result<Duration, CliError> {
    parse_duration(text).ok_or_else(|| {
        CliError::usage(
            format!("invalid {flag} `{text}`"),
            "write a duration in whole seconds, minutes, hours or days: 10s, 2m, 1h30m".to_owned(),
        )
    })
}

/// `[http]` of the configuration file over the defaults.
fn http_config(file: HttpFile) -> Result<HttpConfig, CliError> {
    let mut http = HttpConfig::default();
    let size = |key: &str, text: &str| {
        lanes_core::catalog::parse_size(text).ok_or_else(|| {
            CliError::usage(
                format!("invalid [http] {key} `{text}`"),
                "write a size such as 64K or 1M".to_owned(),
            )
        })
    };
    if let Some(text) = &file.header_timeout {
        http.header_timeout = duration("[http] header-timeout", text)?;
    }
    if let Some(text) = &file.body_timeout {
        http.body_timeout = duration("[http] body-timeout", text)?;
    }
    if let Some(text) = &file.idle_timeout {
        http.idle_timeout = duration("[http] idle-timeout", text)?;
    }
    if let Some(n) = file.max_connections {
        http.max_connections = n;
    }
    if let Some(n) = file.max_requests {
        http.max_requests = n;
    }
    if let Some(text) = &file.max_header_bytes {
        http.max_header_bytes =
            usize::try_from(size("max-header-bytes", text)?).unwrap_or(usize::MAX);
    }
    if let Some(text) = &file.max_body_bytes {
        http.max_body_bytes = size("max-body-bytes", text)?;
    }
    http.check().map_err(|why| {
        CliError::usage(
            format!("invalid [http] in the configuration file: {why}"),
            "see docs/serve.md, \"The HTTP server\"".to_owned(),
        )
    })?;
    Ok(http)
}

/// The default data directory: `$XDG_DATA_HOME/lanes`, else `~/.local/share/lanes`.
fn default_data_dir() -> Result<PathBuf, CliError> {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("lanes"));
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".local/share/lanes")),
        None => Err(CliError::usage(
            "cannot choose a data directory: neither XDG_DATA_HOME nor HOME is set",
            "pass --data-dir DIR".to_owned(),
        )),
    }
}

fn config(args: &ServeArgs) -> Result<ServeConfig, CliError> {
    // Absolute, so its directory and the secret files it names are hidden from steps wherever
    // they run.
    let config_path = args
        .config
        .as_deref()
        .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.to_owned()));
    let file = match &config_path {
        Some(path) => ConfigFile::read(path).map_err(|e| {
            CliError::usage(
                e.to_string(),
                "see docs/forge.md for the configuration file's keys".to_owned(),
            )
        })?,
        None => ConfigFile::default(),
    };
    let agent = file.agent.unwrap_or_default();
    let data_dir = match args.data_dir.clone().or(file.data_dir) {
        Some(dir) => std::path::absolute(&dir).unwrap_or(dir),
        None => default_data_dir()?,
    };
    let poll_interval = match args
        .poll_interval
        .as_deref()
        .or(file.poll_interval.as_deref())
    {
        Some(text) => duration("poll interval", text)?,
        None => DEFAULT_POLL,
    };
    let defaults = schedule::Config::default();
    let heartbeat = match args.heartbeat.as_deref().or(file.heartbeat.as_deref()) {
        Some(text) => duration("heartbeat", text)?.as_millis() as u64,
        None => defaults.heartbeat,
    };
    let lease = match args.lease.as_deref().or(file.lease.as_deref()) {
        Some(text) => duration("lease", text)?.as_millis() as u64,
        None => defaults.lease,
    };
    if lease <= heartbeat {
        return Err(CliError::usage(
            format!("a lease of {lease} ms does not outlast the heartbeat of {heartbeat} ms"),
            "make the lease at least twice the heartbeat, e.g. --heartbeat 10s --lease 30s"
                .to_owned(),
        ));
    }
    // Files holding secrets are hidden from steps like the configuration itself.
    let secret_files: Vec<PathBuf> = file
        .repo
        .iter()
        .flat_map(|r| r.secrets.values().filter_map(|s| s.file.clone()))
        .collect();
    let mut repos: Vec<RepoConfig> = file
        .repo
        .into_iter()
        .map(|r| {
            Ok(RepoConfig {
                limits: r.limits.as_ref().map(limits).transpose()?,
                secrets: r
                    .secrets
                    .iter()
                    .map(|(name, s)| Ok((name.clone(), s.resolve(name)?)))
                    .collect::<Result<_, String>>()
                    .map_err(|why| {
                        CliError::usage(
                            format!("invalid secret in the configuration file: {why}"),
                            "write [repo.secrets.NAME] with one of value = \"...\", file = \
                             \"path\" or env = \"VARIABLE\" (docs/serve.md)"
                                .to_owned(),
                        )
                    })?,
                name: r.name,
                path: r.path,
                remote: r.remote,
                default_branch: r.default_branch,
            })
        })
        .collect::<Result<_, CliError>>()?;
    repos.extend(args.repos.iter().map(|path| RepoConfig {
        name: None,
        path: path.clone(),
        remote: None,
        default_branch: None,
        limits: None,
        secrets: Default::default(),
    }));
    let local_agent = if args.no_local_agent || agent.enabled == Some(false) {
        None
    } else {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1);
        Some(LocalAgentConfig {
            capacity: args
                .agent_capacity
                .or(agent.capacity)
                .unwrap_or(cores)
                .max(1),
            labels: agent.labels.unwrap_or_else(host_labels),
            cache_dir: cache_dir()?,
            sandbox: !args.no_sandbox && agent.sandbox != Some(false),
            step_user: match args.step_user.as_deref().or(agent.step_user.as_deref()) {
                Some(text) => Some(StepUser::parse(text).map_err(|why| {
                    CliError::usage(
                        format!("bad step user: {why}"),
                        "give a user name, a UID or UID:GID, e.g. --step-user lanes-step"
                            .to_owned(),
                    )
                })?),
                None => None,
            },
            expose: args
                .step_expose
                .iter()
                .chain(agent.step_expose.iter().flatten())
                .cloned()
                .collect(),
            limits: agent
                .limits
                .as_ref()
                .map(limits)
                .transpose()?
                .unwrap_or_default(),
            hide: [
                Some(data_dir.clone()),
                config_path
                    .as_deref()
                    .and_then(Path::parent)
                    .map(Path::to_owned),
            ]
            .into_iter()
            .flatten()
            .chain(secret_files)
            .collect(),
        })
    };
    Ok(ServeConfig {
        data_dir,
        listen: args
            .listen
            .clone()
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned()),
        repos,
        poll_interval,
        local_agent,
        public_read: args.public_read || file.public_read == Some(true),
        schedule: schedule::Config {
            heartbeat,
            lease,
            ..defaults
        },
        http: http_config(file.http.unwrap_or_default())?,
    })
}

/// `lanes serve` exits 2 whenever it cannot start, whatever the cause (docs/cli.md: service units
/// rely on it), so its start-up errors are usage errors rather than take their class; their
/// messages stay.
fn not_started(error: CliError) -> CliError {
    match error {
        CliError::Usage { .. } => error,
        other => CliError::usage(other.to_string(), other.help()),
    }
}

pub(crate) fn run(args: &ServeArgs, printer: &Printer) -> Result<u8, CliError> {
    let config = config(args).map_err(not_started)?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("LANES_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Fails only when a subscriber is set already (a second serve in one process): that one
    // logs instead.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    // See `not_started`.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::usage(format!("cannot start the runtime: {e}"), None::<String>))?;
    runtime
        .block_on(lanes_server::serve::serve(config, |text| printer.err(text)))
        .map_err(|e| CliError::usage(e.to_string(), None::<String>))?;
    Ok(crate::error::exit::SUCCESS)
}
