//! `lanes hook`: the `post-receive` hook that tells the forge about a push, so it reads the
//! repository's refs now rather than at its next poll.
//!
//! `install` writes the hook; `notify` is what the hook runs. A hook must never fail a push, so
//! `notify` turns every problem into a warning and exits 0.

use crate::api::{self, RefsChanged};
use crate::args::{HookCommand, HookInstallArgs, HookNotifyArgs};
use crate::client::{Client, block_on, server_url};
use crate::error::{CliError, exit};
use crate::forge::repo_name;
use crate::printer::Printer;
use lanes_git::Repo;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A line only hooks written by `lanes hook install` have: what may be replaced without
/// `--force`.
const MARKER: &str = "# lanes post-receive hook";

/// A notification that takes longer than this is given up: the push is held until the hook
/// returns.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn run(dir: &Path, command: &HookCommand, printer: &Printer) -> Result<u8, CliError> {
    match command {
        HookCommand::Install(args) => install(dir, args, printer),
        HookCommand::Notify(args) => Ok(notify(args, printer)),
    }
}

fn install(dir: &Path, args: &HookInstallArgs, printer: &Printer) -> Result<u8, CliError> {
    let given = dir.join(&args.repo);
    let path = std::fs::canonicalize(&given).map_err(|e| {
        CliError::usage(
            format!("cannot use {} as a repository: {e}", given.display()),
            "pass the path of the repository `lanes serve --repo` watches".to_owned(),
        )
    })?;
    let repo = Repo::discover(&path)?;
    let top = repo.workdir().unwrap_or_else(|| repo.git_dir()).to_owned();
    // Discovery walks up: a mistyped subdirectory must not put the hook into an enclosing
    // repository.
    let same = |p: &Path| std::fs::canonicalize(p).is_ok_and(|p| p == path);
    if !same(&top) && !same(repo.git_dir()) {
        return Err(CliError::usage(
            format!(
                "{} is inside the repository at {}, not a repository itself",
                path.display(),
                top.display()
            ),
            format!(
                "pass the repository's own directory: --repo {}",
                top.display()
            ),
        ));
    }
    let name = match args
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        Some(name) => name.to_owned(),
        None => repo_name(&top).ok_or_else(|| {
            CliError::usage(
                format!("cannot name the repository at {}", top.display()),
                "pass --name NAME: the name `lanes serve` gives it".to_owned(),
            )
        })?,
    };
    let server = server_url(args.server.as_deref())?;
    let server = server.as_str().trim_end_matches('/');
    let lanes = std::env::current_exe().map_err(|e| {
        CliError::environment(
            format!("cannot tell where this lanes binary is: {e}"),
            None::<String>,
        )
    })?;
    let lanes = lanes.to_str().ok_or_else(|| {
        CliError::environment(
            format!(
                "the path of this lanes binary is not UTF-8: {}",
                lanes.display()
            ),
            "install lanes under a UTF-8 path".to_owned(),
        )
    })?;

    let hooks = repo.git_dir().join("hooks");
    let hook = hooks.join("post-receive");
    let existing = match std::fs::read(&hook) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(CliError::Read {
                path: hook.display().to_string(),
                source,
            });
        }
    };
    let ours = existing
        .as_deref()
        .is_some_and(|bytes| String::from_utf8_lossy(bytes).contains(MARKER));
    if existing.is_some() && !ours && !args.force {
        return Err(CliError::usage(
            format!(
                "{} already exists and lanes did not write it",
                hook.display()
            ),
            format!(
                "pass --force to replace it, or add this line to it: {}",
                notify_command(lanes, server, &name)
            ),
        ));
    }
    write_hook(&hooks, &hook, &script(lanes, server, &name))?;
    let verb = match (&existing, ours) {
        (None, _) => "installed",
        (Some(_), true) => "updated",
        (Some(_), false) => "replaced",
    };
    printer.out(&format!(
        "{verb} {}: each push tells the forge at {server} to read the refs of {name}\n",
        hook.display()
    ))?;
    Ok(exit::SUCCESS)
}

/// The hook's text: a POSIX shell script that runs this lanes binary.
fn script(lanes: &str, server: &str, name: &str) -> String {
    format!(
        "#!/bin/sh\n\
         {MARKER}, written by `lanes hook install` (run it again to update this file).\n\
         # Tells the forge to read this repository's refs now; it never fails a push.\n\
         exec {}\n",
        notify_command(lanes, server, name)
    )
}

fn notify_command(lanes: &str, server: &str, name: &str) -> String {
    format!(
        "{} hook notify --server {} --repo {}",
        shell_quote(lanes),
        shell_quote(server),
        shell_quote(name)
    )
}

/// `'text'`, with each `'` written as `'\''`.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Write the hook through a temporary file, executable, then rename it into place: git never
/// runs a half-written hook.
fn write_hook(hooks: &Path, hook: &Path, text: &str) -> Result<(), CliError> {
    let failed = |path: &Path, e: std::io::Error| {
        CliError::environment(
            format!("failed to write {}: {e}", path.display()),
            None::<String>,
        )
    };
    std::fs::create_dir_all(hooks).map_err(|e| failed(hooks, e))?;
    let temporary: PathBuf = hooks.join(".post-receive.lanes-tmp");
    std::fs::write(&temporary, text).map_err(|e| failed(&temporary, e))?;
    set_executable(&temporary).map_err(|e| failed(&temporary, e))?;
    std::fs::rename(&temporary, hook).map_err(|e| {
        // The rename's error is the one to report; a temporary file left is overwritten next time.
        let _ = std::fs::remove_file(&temporary);
        failed(hook, e)
    })
}

#[cfg(unix)]
fn set_executable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

#[cfg(not(unix))]
fn set_executable(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

/// POST `refs-changed`; any failure is a warning, and the exit code is always 0.
fn notify(args: &HookNotifyArgs, printer: &Printer) -> u8 {
    let result = server_url(args.server.as_deref())
        .and_then(|url| Client::new(url, None, Some(NOTIFY_TIMEOUT)))
        .and_then(|client| {
            block_on(async {
                let url = client.url(["repos", args.repo.as_str(), "refs-changed"]);
                let value = client.post_anonymous(url).await?;
                api::read::<RefsChanged>(&client, "the refs-changed answer", &value)
            })?
        });
    match result {
        Ok(changed) => {
            if !changed.created.is_empty() {
                let runs: Vec<String> = changed.created.iter().map(|n| format!("#{n}")).collect();
                let noun = if runs.len() == 1 { "run" } else { "runs" };
                // The push went through; a pusher who closed the pipe loses nothing.
                let _ = printer.out(&format!(
                    "lanes: the forge created {noun} {} of {}\n",
                    runs.join(", "),
                    args.repo
                ));
            }
        }
        Err(error) => {
            let mut text = format!(
                "warning: lanes could not tell the forge about this push: {error}\n  the forge \
                 reads the refs at its next poll anyway\n"
            );
            if let Some(help) = error.help() {
                text.push_str(&format!("  help: {help}\n"));
            }
            printer.err(&text);
        }
    }
    exit::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hook_runs_notify_with_every_argument_quoted() {
        let text = script("/opt/it's/lanes", "http://127.0.0.1:8080", "app");
        assert_eq!(
            text,
            "#!/bin/sh\n\
             # lanes post-receive hook, written by `lanes hook install` (run it again to update this file).\n\
             # Tells the forge to read this repository's refs now; it never fails a push.\n\
             exec '/opt/it'\\''s/lanes' hook notify --server 'http://127.0.0.1:8080' --repo 'app'\n"
        );
    }
}
