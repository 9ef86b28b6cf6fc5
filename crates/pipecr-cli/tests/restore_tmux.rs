//! A real program no one here wrote (issue 15 §5): a `tmux` server on a private socket,
//! running a shell that prints a counter to its pane, dumped (the dump kills it) and
//! restored.
//!
//! The server daemonizes: it is a session leader (reparented to the test, a child
//! subreaper) holding the pseudo-terminal master, the libevent signal pipe and the unix
//! socket it listens on; its child, the shell, leads a session of its own on the slave
//! (its controlling terminal, with echo turned off by `stty -echo`). The shell reads a
//! line from its terminal, prints `line N LINE ROWS COLS` (its terminal's window size, by
//! `stty size`), then writes N to a ready FIFO: the test types each line with `tmux
//! send-keys` and waits for the ready line, never sleeping.
//!
//! After the restore, through tmux's own client: `display` names the same server pid,
//! `list-panes` the same shell pid, `capture-pane` shows the screen as it was (three
//! lines, no echo), `send-keys` reaches the shell (lines 4 and 5 follow on the screen,
//! with the window size tmux gave the pane), and the server ends cleanly — by
//! `kill-server`, or on its own when the shell exits (its SIGCHLD reaches the restored
//! event loop) — with `pipecr restore` exiting 0.
//!
//! The server forked the pane's shell, then its heap grew (the lines it keeps): the heap
//! is two areas, and the break at the end of the second must come back (it once came
//! back at the end of the first, and the server's next sbrk corrupted its heap: glibc
//! aborted with "double free or corruption", in some runs).
//!
//! With a client attached (`tmux attach` under `script`):
//!
//! - all in one tree (script made a child subreaper, so the daemonized server stays below
//!   it): the same client is still attached after the restore and draws the new lines on
//!   script's terminal; the whole tree ends with the shell;
//! - the client outside the tree: the dump reports the client's connection and terminal
//!   as external, and its kill of the server ends that client, so nothing can connect the
//!   server to it again. The restore refuses (exit 5, naming the descriptor) unless given
//!   a stand-in; with `--inherit-fd N=null` for both, the server finds the client gone, as
//!   when a client dies, and goes on. (An accepted socket whose client was outside the
//!   tree used to be created anyway with its listener, and failed the restore.)

mod common;

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};

use common::KillOnDrop;
use pipecr_image::{Image, proto};

/// `common::capable`, but in CI (which runs as root) a missing capability fails the test
/// instead of skipping it.
fn capable() -> bool {
    let ok = common::capable();
    assert!(
        ok || std::env::var_os("CI").is_none(),
        "CI must run these tests with CAP_SYS_PTRACE and CAP_CHECKPOINT_RESTORE"
    );
    ok
}

/// Fails (never skips) when `prog` is not installed.
fn require(prog: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {prog}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{prog} is not installed: this test needs it (.ci/run installs it on a fresh machine)"
    );
}

/// Runs `tmux -S SOCK ARGS...` (a client of the server on `sock`): its stdout, or its
/// stderr when it fails.
fn try_tmux(sock: &Path, args: &[&str]) -> Result<String, String> {
    let out = common::only_stdio(
        Command::new("tmux")
            .arg("-S")
            .arg(sock)
            .args(args)
            .env_remove("TMUX")
            .env("SHELL", "/bin/sh")
            .stdin(Stdio::null()),
    )
    .output()
    .unwrap();
    match out.status.success() {
        true => Ok(String::from_utf8(out.stdout).unwrap()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

/// [`try_tmux`], panicking when it fails.
fn tmux(sock: &Path, args: &[&str]) -> String {
    try_tmux(sock, args).unwrap_or_else(|e| {
        let socket = std::fs::symlink_metadata(sock)
            .map(|m| format!("a file of mode {:o}", m.mode()))
            .unwrap_or_else(|e| e.to_string());
        panic!("tmux {args:?}: {e} (the socket path: {socket})")
    })
}

/// Waits until one client is attached to the server on `sock` (which may not be up yet)
/// and returns its pid.
fn attached_client(sock: &Path) -> i32 {
    let mut clients = String::new();
    common::wait_until("a tmux client to attach", || {
        clients = try_tmux(sock, &["list-clients", "-F", "#{client_pid}"]).unwrap_or_default();
        !clients.trim().is_empty()
    });
    clients.trim().parse().unwrap()
}

/// The pane's screen, its trailing empty lines dropped.
fn screen(sock: &Path) -> Vec<String> {
    let text = tmux(sock, &["capture-pane", "-p"]);
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines
}

/// The screen after `n` lines were typed: `line I kI ROWS COLS` each, with the window
/// size the shell's terminal has (`stty size`).
fn lines(n: usize, size: &str) -> Vec<String> {
    (1..=n)
        .map(|i| format!("line {i} k{i} {size}").trim_end().to_owned())
        .collect()
}

/// The pane's size as tmux knows it, `ROWS COLS` (as `stty size` prints it).
fn pane_size(sock: &Path) -> String {
    tmux(sock, &["display", "-p", "#{pane_height} #{pane_width}"])
        .trim()
        .to_owned()
}

/// Reads one line from the ready FIFO `f`, with a deadline.
fn ready_line(f: &mut std::fs::File) -> String {
    let mut line = Vec::new();
    loop {
        assert!(
            common::readable_within(f, common::DEADLINE),
            "no ready line; got {:?}",
            String::from_utf8_lossy(&line)
        );
        let mut b = [0u8; 1];
        f.read_exact(&mut b).unwrap();
        if b[0] == b'\n' {
            return String::from_utf8(line).unwrap();
        }
        line.push(b[0]);
    }
}

/// Types line `kI` into the pane and waits until the shell printed it.
fn type_line(sock: &Path, ready: &mut std::fs::File, i: usize) {
    tmux(sock, &["send-keys", &format!("k{i}"), "Enter"]);
    assert_eq!(ready_line(ready), i.to_string(), "the shell's line {i}");
}

/// The pane's shell command: echo off (then 0 on the FIFO `ready`), then for each line X
/// read from the terminal until "q", `line N X ROWS COLS` on the screen (the terminal's
/// window size, from a `stty size` child) and N on the FIFO `ready`.
fn counter(ready: &Path) -> String {
    format!(
        "stty -echo; echo 0 > {ready}; i=0; while read x && [ \"$x\" != q ]; do i=$((i+1)); \
         echo line $i $x $(stty size); echo $i > {ready}; done",
        ready = ready.display()
    )
}

/// Starts a tmux server on `ROOT/sock` with one detached 80x24 session whose pane runs
/// the counting shell. Returns the socket path, the ready FIFO and the server's pid.
fn start_server(root: &Path) -> (std::path::PathBuf, std::fs::File, i32) {
    let sock = root.join("sock");
    let ready_path = root.join("ready");
    common::mkfifo(&ready_path);
    let ready = common::open_ctl(&ready_path);
    let shell = counter(&ready_path);
    // The pane runs `$SHELL -c SHELL` (SHELL=/bin/sh: see `tmux`), one process.
    // -f /dev/null: no user or system configuration. The client forks the server and
    // exits once the session exists; the server, daemonized, comes to us (subreaper).
    tmux(
        &sock,
        &[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-x",
            "80",
            "-y",
            "24",
            &shell,
        ],
    );
    let server: i32 = tmux(&sock, &["display", "-p", "#{pid}"])
        .trim()
        .parse()
        .unwrap();
    let mut ready = ready;
    assert_eq!(ready_line(&mut ready), "0", "the shell turned echo off");
    (sock, ready, server)
}

/// How the restored server is ended.
#[derive(Debug, Clone, Copy)]
enum End {
    /// `tmux kill-server`.
    KillServer,
    /// The shell reads `q` and exits; the server, left without a pane, exits by itself.
    ShellExits,
}

#[test]
fn a_tmux_server_and_its_shell_go_on_after_a_restore_with_the_same_screen() {
    if !capable() {
        return;
    }
    require("tmux");
    common::set_subreaper();
    for end in [End::KillServer, End::ShellExits] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let (sock, mut ready, server) = start_server(root);
        let _guard = KillOnDrop(vec![server]);
        for i in 1..=3 {
            type_line(&sock, &mut ready, i);
        }
        let shell: i32 = tmux(&sock, &["list-panes", "-F", "#{pane_pid}"])
            .trim()
            .parse()
            .unwrap();
        let tree = common::descendants(server);
        assert_eq!(tree, [server, shell], "the server and its shell");
        let _guard = KillOnDrop(tree.clone());
        let size = pane_size(&sock);
        let before = screen(&sock);
        assert_eq!(before, lines(3, &size), "the screen before the dump");

        let img = root.join("img");
        common::dump(server, &img, &[]);
        common::wait_until("every pid of the tree to be gone", || {
            common::reap_exited(&tree);
            tree.iter().all(|&p| common::state(p).is_none())
        });
        let image = Image::open(&img).unwrap();
        let files: Vec<proto::OpenFile> = image.read_records(pipecr_image::FILES).unwrap();
        assert!(
            files
                .iter()
                .any(|f| matches!(&f.kind, Some(proto::open_file::Kind::Pty(p)) if p.master)),
            "the pane's pty is saved as a pair: {files:?}"
        );
        let listening = files.iter().find_map(|f| match &f.kind {
            Some(proto::open_file::Kind::UnixSocket(u))
                if u.state == proto::UnixSocketState::Listening as i32 =>
            {
                Some(u.name.clone())
            }
            _ => None,
        });
        assert_eq!(
            listening.as_deref(),
            Some(sock.as_os_str().as_encoded_bytes()),
            "the server's listening socket"
        );
        let tree_records: Vec<proto::Process> = image.read_records(pipecr_image::TREE).unwrap();
        let sessions: Vec<(i32, i32, bool)> = tree_records
            .iter()
            .map(|p| (p.pid, p.sid, p.ctty_file_id != 0))
            .collect();
        assert_eq!(
            sessions,
            [(server, server, false), (shell, shell, true)],
            "two session leaders, the shell's on its pane"
        );
        let restore = common::restore(&img, server);
        // The same server and shell, the same screen: no line lost or echoed again.
        assert_eq!(
            tmux(&sock, &["display", "-p", "#{pid}"]).trim(),
            server.to_string()
        );
        assert_eq!(
            tmux(&sock, &["list-panes", "-F", "#{pane_pid}"]).trim(),
            shell.to_string()
        );
        assert_eq!(screen(&sock), before, "the screen after the restore");
        assert_eq!(pane_size(&sock), size);
        // send-keys reaches the shell, which goes on counting on the same screen.
        for i in 4..=5 {
            type_line(&sock, &mut ready, i);
        }
        assert_eq!(
            screen(&sock),
            lines(5, &size),
            "the screen after two more lines"
        );
        match end {
            End::KillServer => {
                tmux(&sock, &["kill-server"]);
            }
            End::ShellExits => {
                tmux(&sock, &["send-keys", "q", "Enter"]);
            }
        }
        common::finish_restore(restore, 0);
        common::wait_until("the shell to be gone", || {
            common::reap_exited(&[shell]);
            common::state(shell).is_none()
        });
    }
}

#[test]
fn a_tmux_client_attached_under_script_in_the_tree_stays_attached_after_a_restore() {
    if !capable() {
        return;
    }
    require("tmux");
    require("script");
    require("python3");
    common::set_subreaper();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (sock, ready_path, cin_path) = (root.join("sock"), root.join("ready"), root.join("cin"));
    common::mkfifo(&ready_path);
    common::mkfifo(&cin_path);
    let mut ready = common::open_ctl(&ready_path);
    // script's input: a FIFO the test holds open, so that it never reads an end of file
    // (which it would pass on to the client as ^D).
    let _cin = common::open_ctl(&cin_path);
    let typescript = root.join("typescript");
    // The root: `script` made a child subreaper (by python3, which then runs it), so
    // that the server tmux daemonizes comes to it and the whole of tmux is one tree:
    // script on the pty master, its `sh -c` and `tmux new-session` (the client) on the
    // slave, the server with the client's connection and terminal and the pane's pty.
    let attach = format!(
        "tmux -S {sock} -f /dev/null new-session -x 80 -y 24 \"{counter}\"",
        sock = sock.display(),
        counter = counter(&ready_path)
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('$', "\\$")
    );
    let mut cmd = Command::new("python3");
    cmd.args([
        "-c",
        "import ctypes, os, sys\n\
         ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER\n\
         os.execvp('script', sys.argv[1:])",
        "script",
        "-q",
        "-f",
        "-c",
        &attach,
    ])
    .arg(&typescript)
    .env_remove("TMUX")
    .env("SHELL", "/bin/sh")
    .env("TERM", "xterm")
    .stdin(std::fs::File::open(&cin_path).unwrap())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let mut script = common::only_stdio(&mut cmd).spawn().unwrap();
    let pid = script.id() as i32;
    let _guard = KillOnDrop(vec![pid]);
    let client = attached_client(&sock);
    assert_eq!(ready_line(&mut ready), "0", "the shell turned echo off");
    let server: i32 = tmux(&sock, &["display", "-p", "#{pid}"])
        .trim()
        .parse()
        .unwrap();
    let _guard = KillOnDrop(vec![pid, server]);
    for i in 1..=3 {
        type_line(&sock, &mut ready, i);
    }
    let shell: i32 = tmux(&sock, &["list-panes", "-F", "#{pane_pid}"])
        .trim()
        .parse()
        .unwrap();
    let tree = common::descendants(pid);
    assert!(
        tree.contains(&client) && tree.contains(&server) && tree.contains(&shell),
        "script {pid}, the client {client}, the server {server} and its shell {shell} in one tree: {tree:?}"
    );
    let size = pane_size(&sock);
    let before = screen(&sock);
    assert_eq!(before, lines(3, &size), "the screen before the dump");
    common::wait_until("the client to draw line 3 on script's terminal", || {
        std::fs::read_to_string(&typescript).is_ok_and(|t| t.contains("line 3 k3"))
    });

    let img = root.join("img");
    let out = common::dump(pid, &img, &[]);
    assert!(
        !out.contains("external"),
        "nothing leads outside the tree: {out}"
    );
    script.wait().unwrap();
    common::wait_until("every pid of the tree to be gone", || {
        common::reap_exited(&tree);
        tree.iter().all(|&p| common::state(p).is_none())
    });

    let _guard = KillOnDrop(tree.clone());
    let restore = common::restore(&img, pid);
    assert_eq!(
        tmux(&sock, &["list-clients", "-F", "#{client_pid}"]).trim(),
        client.to_string(),
        "the same client, still attached"
    );
    assert_eq!(screen(&sock), before, "the screen after the restore");
    assert_eq!(pane_size(&sock), size);
    for i in 4..=5 {
        type_line(&sock, &mut ready, i);
    }
    assert_eq!(
        screen(&sock),
        lines(5, &size),
        "the screen after two more lines"
    );
    // The client draws the new lines on its terminal, script's pty: script logs them.
    common::wait_until("the client to draw line 5 on script's terminal", || {
        std::fs::read_to_string(&typescript).is_ok_and(|t| t.contains("line 5 k5"))
    });
    // The shell exits: the server, then the client, then script's shell and script.
    tmux(&sock, &["send-keys", "q", "Enter"]);
    common::finish_restore(restore, 0);
    common::wait_until("the rest of the tree to be gone", || {
        common::reap_exited(&tree);
        tree.iter().all(|&p| common::state(p).is_none())
    });
}

/// The descriptor number of the `external: pid PID fd N: WHAT...` line of a dump's
/// output whose WHAT starts with `what`.
fn external_fd(dumped: &str, pid: i32, what: &str) -> i32 {
    let prefix = format!("external: pid {pid} fd ");
    dumped
        .lines()
        .find_map(|l| {
            let (fd, rest) = l.strip_prefix(&prefix)?.split_once(": ")?;
            rest.starts_with(what).then(|| fd.parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no external {what} of pid {pid}: {dumped}"))
}

#[test]
fn a_client_attached_from_outside_the_tree_is_external_and_let_go_at_restore() {
    if !capable() {
        return;
    }
    require("tmux");
    require("script");
    common::set_subreaper();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (sock, mut ready, server) = start_server(root);
    let _guard = KillOnDrop(vec![server]);
    let cin_path = root.join("cin");
    common::mkfifo(&cin_path);
    let _cin = common::open_ctl(&cin_path);
    // `tmux attach` under script, outside the server's tree: the server holds the
    // client's connection and its terminal (script's pty slave).
    let mut cmd = Command::new("script");
    cmd.args(["-q", "-f", "-c"])
        .arg(format!("tmux -S {} attach", sock.display()))
        .arg(root.join("typescript"))
        .env_remove("TMUX")
        .env("TERM", "xterm")
        .stdin(std::fs::File::open(&cin_path).unwrap())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut script = common::only_stdio(&mut cmd).spawn().unwrap();
    let _guard = KillOnDrop(vec![server, script.id() as i32]);
    let client = attached_client(&sock);
    for i in 1..=3 {
        type_line(&sock, &mut ready, i);
    }
    let shell: i32 = tmux(&sock, &["list-panes", "-F", "#{pane_pid}"])
        .trim()
        .parse()
        .unwrap();
    let size = pane_size(&sock);
    assert_eq!(screen(&sock), lines(3, &size), "the screen before the dump");
    let tree = common::descendants(server);
    assert_eq!(
        tree,
        [server, shell],
        "the client {client} is not in the tree"
    );
    let _guard = KillOnDrop(vec![server, shell, script.id() as i32]);

    let img = root.join("img");
    let dumped = common::dump(server, &img, &[]);
    let conn = external_fd(&dumped, server, "unix stream socket");
    let tty = external_fd(&dumped, server, "terminal /dev/pts/");
    // The server's end of the connection is gone with it: the client exits, and script.
    common::wait_child(&mut script, "script to exit with its client");
    common::wait_until("every pid of the tree to be gone", || {
        common::reap_exited(&tree);
        tree.iter().all(|&p| common::state(p).is_none())
    });

    // Nothing can connect the server to that client again: the restore asks for a
    // descriptor, and creates nothing.
    let out = common::restore_command(&img).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(
        err.contains(&format!("pid {server} fd {conn}: unix stream socket"))
            && err.contains("--inherit-fd"),
        "{err}"
    );
    assert!(
        tree.iter().all(|&p| common::state(p).is_none()),
        "nothing left running"
    );

    // Given nothing (null) for the connection and the terminal, the server finds its
    // client gone (as when a client dies) and goes on with the same screen and shell.
    let restore = common::restore_started(
        common::restore_command(&img)
            .arg("--inherit-fd")
            .arg(format!("{conn}=null"))
            .arg("--inherit-fd")
            .arg(format!("{tty}=null")),
        server,
    );
    common::wait_until("the server to let its lost client go", || {
        tmux(&sock, &["list-clients"]).trim().is_empty()
    });
    assert_eq!(
        screen(&sock),
        lines(3, &size),
        "the screen after the restore"
    );
    for i in 4..=5 {
        type_line(&sock, &mut ready, i);
    }
    assert_eq!(
        screen(&sock),
        lines(5, &size),
        "the screen after two more lines"
    );
    tmux(&sock, &["kill-server"]);
    common::finish_restore(restore, 0);
    common::wait_until("the shell to be gone", || {
        common::reap_exited(&[shell]);
        common::state(shell).is_none()
    });
}
