//! Spawning an attempt's leader: directly (`posix_spawn`) or through std with the hooks
//! containment needs, with its standard streams and the attempt's variables.

use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt as _;
use std::process::Stdio;
use std::sync::OnceLock;

use super::runner::{PrepareCommand, ProcessOptions};
use super::{
    AttemptCgroup, AttemptEnv, CommandSpec, PORTS_PER_ATTEMPT, PortRange, RepoView, contain,
    leader, spawn, view,
};

pub(super) struct Containment {
    /// How the leader enters its own PID namespace, when it does.
    pub(super) namespace: Option<contain::NsRoute>,
    /// Why it does not although asked to (the host allows none).
    pub(super) no_namespace: Option<String>,
    /// Its cgroup, when limits were asked for.
    pub(super) cgroup: Option<AttemptCgroup>,
    /// Its port range.
    pub(super) ports: Option<PortRange>,
    /// The repository path that shows its workspace (only with a PID namespace).
    pub(super) view: Option<RepoView>,
}

impl Containment {
    pub(super) fn new(options: &ProcessOptions, env: &AttemptEnv<'_>) -> std::io::Result<Self> {
        let (namespace, no_namespace) = if options.pid_namespace {
            match contain::NsRoute::supported() {
                Ok(route) => (Some(route), None),
                Err(why) if options.require_isolation => {
                    return Err(std::io::Error::other(format!(
                        "isolation is required (`[isolation] require = true`) but this host gives no PID namespace: {why}; run as root or allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1), or drop the requirement"
                    )));
                }
                Err(why) => (None, Some(why)),
            }
        } else {
            (None, None)
        };
        let cgroup = if options.limits.any() {
            let name = format!("{}-{}", env.task, env.attempt);
            Some(AttemptCgroup::create(&name, &options.limits).map_err(std::io::Error::other)?)
        } else {
            None
        };
        Ok(Self {
            namespace,
            no_namespace,
            view: namespace.and(options.repo_view.clone()),
            cgroup,
            ports: PortRange::take(),
        })
    }

    /// Whether nothing but the process group contains it (the `posix_spawn` fast path applies).
    pub(super) fn is_plain(&self) -> bool {
        self.namespace.is_none() && self.cgroup.is_none()
    }
}

/// A spawned attempt's leader process.
pub(super) enum Child {
    Direct(spawn::DirectChild),
    /// A contained attempt spawned without a copy of Forge (see `leader.rs`): its init.
    Contained(leader::ContainedChild),
    Std(tokio::process::Child),
}

impl Child {
    /// Spawns `spec` with the attempt's variables, its standard streams and, when given,
    /// `prepare` applied: directly when no hook has to see the command and the direct path
    /// applies, else through `std::process::Command`.
    pub(super) fn spawn(
        spec: &CommandSpec,
        env: &AttemptEnv<'_>,
        prepare: Option<&PrepareCommand<'_>>,
        contain: &Containment,
        stdout: std::io::PipeWriter,
        stderr: std::io::PipeWriter,
    ) -> std::io::Result<Self> {
        Self::spawn_inner(spec, env, prepare, contain, stdout, stderr).map_err(|e| {
            // `ENOENT` from a spawn reads as a missing program; say when it is the directory.
            if e.kind() == std::io::ErrorKind::NotFound && !spec.cwd.is_dir() {
                std::io::Error::new(
                    e.kind(),
                    format!("working directory `{}` does not exist", spec.cwd.display()),
                )
            } else {
                e
            }
        })
    }

    fn spawn_inner(
        spec: &CommandSpec,
        env: &AttemptEnv<'_>,
        prepare: Option<&PrepareCommand<'_>>,
        contain: &Containment,
        stdout: std::io::PipeWriter,
        stderr: std::io::PipeWriter,
    ) -> std::io::Result<Self> {
        let attempt = env.attempt.to_string();
        let port_base = contain
            .ports
            .as_ref()
            .map_or_else(String::new, |p| p.base().to_string());
        let port_count = if contain.ports.is_some() {
            PORTS_PER_ATTEMPT.to_string()
        } else {
            String::new()
        };
        let mut vars: Vec<(&OsStr, &OsStr)> = vec![
            ("FORGE_RUN_ID".as_ref(), env.run.as_str().as_ref()),
            ("FORGE_TASK_ID".as_ref(), env.task.as_ref()),
            ("FORGE_ATTEMPT".as_ref(), attempt.as_ref()),
            ("FORGE_WORKSPACE".as_ref(), spec.cwd.as_os_str()),
            // A shell trusts an inherited `PWD` naming its directory; tools that read `PWD`
            // (rather than `getcwd`) must find the workspace, never Forge's own directory.
            ("PWD".as_ref(), spec.cwd.as_os_str()),
            ("OLDPWD".as_ref(), spec.cwd.as_os_str()),
        ];
        if contain.ports.is_some() {
            vars.push(("FORGE_PORT_BASE".as_ref(), port_base.as_ref()));
            vars.push(("FORGE_PORT_COUNT".as_ref(), port_count.as_ref()));
        }
        if prepare.is_none() && contain.is_plain() {
            // The child's stdin is `dup2`ed from the shared `/dev/null` itself.
            let own;
            let stdin = match shared_dev_null() {
                Some(fd) => fd,
                None => {
                    own = dev_null()?;
                    own.as_fd()
                }
            };
            if let Some(child) = spawn::spawn(spec, &vars, [stdin, stdout.as_fd(), stderr.as_fd()])?
            {
                // Dropping this process's copies of the child's ends (here, on return) lets
                // the pipes reach end-of-file when the child's side closes.
                return Ok(Self::Direct(child));
            }
        }
        if prepare.is_none()
            && let Some(route) = contain.namespace
            && let Some(child) =
                Self::spawn_contained(spec, &vars, contain, route, &stdout, &stderr)?
        {
            return Ok(Self::Contained(child));
        }
        let mut command = std::process::Command::new(&spec.program);
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        // First: every later hook and the agent see default handling of the stop signals.
        contain::default_signals(&mut command);
        command
            .args(&spec.args)
            .current_dir(&spec.cwd)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .envs(vars);
        if let Some(cgroup) = &contain.cgroup {
            contain::join_cgroups(&mut command, cgroup.procs_files()?);
        }
        if let Some(prepare) = prepare {
            prepare(&mut command)?;
        }
        if let Some(view) = &contain.view {
            let prepared = view::Prepared::new(view, &spec.cwd)?;
            let repo = std::ffi::OsStr::from_bytes(prepared.repo().to_bytes());
            command
                .env("PWD", repo)
                .env("OLDPWD", repo)
                .env("FORGE_WORKSPACE", repo);
            if let Some(tmp) = prepared.tmp_dir().filter(|_| !sets_tmpdir(spec)) {
                command.env("TMPDIR", tmp);
            }
            view::enter_view(&mut command, prepared);
        }
        // Last: hooks added after it would run in the agent only, not in the leader.
        if let Some(route) = &contain.namespace {
            contain::enter_pid_namespace(&mut command, *route, contain.view.is_some())?;
        }
        command
            .stdin(Stdio::from(dev_null()?))
            .stdout(stdout)
            .stderr(stderr);
        // The command (and with it this process's copies of the child's ends) is dropped
        // right after the spawn, so the pipes reach end-of-file when the child's side closes.
        tokio::process::Command::from(command)
            .spawn()
            .map(Self::Std)
    }

    /// The contained route without a fork (see `leader.rs`); `Ok(None)` where it does not
    /// apply.
    fn spawn_contained(
        spec: &CommandSpec,
        vars: &[(&OsStr, &OsStr)],
        contain: &Containment,
        route: contain::NsRoute,
        stdout: &std::io::PipeWriter,
        stderr: &std::io::PipeWriter,
    ) -> std::io::Result<Option<leader::ContainedChild>> {
        let Some(stdin) = shared_dev_null() else {
            return Ok(None);
        };
        let mut env: Vec<(&OsStr, &OsStr)> = spec
            .env
            .iter()
            .map(|(k, v)| (k.as_os_str(), v.as_os_str()))
            .chain(vars.iter().copied())
            .collect();
        let view = contain
            .view
            .as_ref()
            .map(|view| view::Prepared::new(view, &spec.cwd))
            .transpose()?;
        // The view's paths, owned: `view` itself moves into the spawn.
        let paths = view.as_ref().map(|view| {
            (
                OsStr::from_bytes(view.repo().to_bytes()).to_os_string(),
                OsStr::from_bytes(view.workspace().to_bytes()).to_os_string(),
            )
        });
        if let Some((repo, workspace)) = &paths {
            env.extend([
                ("PWD".as_ref(), repo.as_os_str()),
                ("OLDPWD".as_ref(), repo.as_os_str()),
                ("FORGE_WORKSPACE".as_ref(), repo.as_os_str()),
                (
                    forge_staging::WORKSPACE_HOST_VAR.as_ref(),
                    workspace.as_os_str(),
                ),
            ]);
        }
        if let Some(tmp) = view
            .as_ref()
            .and_then(view::Prepared::tmp_dir)
            .filter(|_| !sets_tmpdir(spec))
        {
            env.push(("TMPDIR".as_ref(), tmp.as_ref()));
        }
        let cgroups = match &contain.cgroup {
            Some(cgroup) => cgroup.procs_files()?,
            None => Vec::new(),
        };
        leader::spawn(leader::Request {
            program: &spec.program,
            args: &spec.args,
            cwd: &spec.cwd,
            env,
            stdio: [stdin, stdout.as_fd(), stderr.as_fd()],
            cgroups,
            view,
            route,
        })
    }

    /// The leader's pid, which is also its group's id; `None` once std has reaped it.
    pub(super) fn pgid(&self) -> Option<rustix::process::Pid> {
        match self {
            Self::Direct(child) => Some(child.pid()),
            Self::Contained(child) => Some(child.pid()),
            Self::Std(child) => child
                .id()
                .and_then(|id| i32::try_from(id).ok())
                .and_then(rustix::process::Pid::from_raw),
        }
    }

    /// Waits for the leader to exit (cancel-safe).
    pub(super) async fn wait(&mut self) -> std::io::Result<spawn::Exit> {
        match self {
            Self::Direct(child) => child.wait().await,
            Self::Contained(child) => child.wait().await,
            Self::Std(child) => child.wait().await.map(|status| spawn::Exit {
                code: status.code(),
                signal: std::os::unix::process::ExitStatusExt::signal(&status),
            }),
        }
    }
}

impl Drop for Child {
    /// An attempt abandoned before its leader was reaped (its future dropped) takes its whole
    /// group with it: the direct child kills it itself; here std's is killed, and tokio reaps
    /// the leader in the background.
    fn drop(&mut self) {
        if let Self::Std(child) = self
            && let Some(pgid) = child
                .id()
                .and_then(|id| i32::try_from(id).ok())
                .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        }
    }
}

/// A child's standard input: `/dev/null`, opened once per process and duplicated per spawn
/// (cheaper than a path lookup per spawn). Falls back to opening it each time.
pub(super) fn dev_null() -> std::io::Result<std::fs::File> {
    match shared_dev_null() {
        Some(fd) => fd.try_clone_to_owned().map(std::fs::File::from),
        None => std::fs::File::open("/dev/null"),
    }
}

/// `/dev/null`, opened once for the process (close-on-exec, as Rust opens every file).
pub(super) fn shared_dev_null() -> Option<std::os::fd::BorrowedFd<'static>> {
    static NULL: OnceLock<Option<std::fs::File>> = OnceLock::new();
    NULL.get_or_init(|| std::fs::File::open("/dev/null").ok())
        .as_ref()
        .map(AsFd::as_fd)
}

/// Whether the command's own environment (the task's) sets `TMPDIR`: a view's own `/tmp` does
/// not override it.
fn sets_tmpdir(spec: &CommandSpec) -> bool {
    spec.env.iter().any(|(k, _)| k == "TMPDIR")
}
