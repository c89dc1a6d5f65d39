//! Helpers: run the binary, temporary files, GnuPG with a private home.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Runs `kith` with `args`, feeding `stdin`.
pub(crate) fn kith(args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kith"));
    // Never the real data directory: tests that need one pass --data-dir.
    cmd.env("KITH_DATA_DIR", "/nonexistent/kith-test-data");
    cmd.env_remove("COLUMNS");
    cmd.args(args).stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("kith starts");
    if let Some(input) = stdin {
        use std::io::Write;
        // kith may exit before reading its input (a missing file, say): a broken pipe
        // here is that, not a test failure.
        let written = child
            .stdin
            .take()
            .expect("piped")
            .write_all(input.as_bytes());
        if let Err(e) = written {
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe,
                "writing kith's stdin: {e}"
            );
        }
    }
    child.wait_with_output().expect("kith finishes")
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes `contents` to `name` in `dir`.
pub(crate) fn file(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, contents).expect("temp file written");
    p
}

pub(crate) fn path(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// GnuPG with a home of its own; the agent it starts is killed on drop, also when
/// the test fails.
pub(crate) struct Gpg {
    home: tempfile::TempDir,
}

impl Gpg {
    /// `None` when gpg is not installed, unless `KITH_REQUIRE_GPG=1` (set by
    /// `.ci/run`), in which case the test fails.
    pub(crate) fn new() -> Option<Self> {
        let found = Command::new("gpg")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            assert!(
                std::env::var("KITH_REQUIRE_GPG").as_deref() != Ok("1"),
                "gpg is required (KITH_REQUIRE_GPG=1) but not installed"
            );
            eprintln!("SKIPPED: gpg is not installed; install gnupg to run the interop tests");
            return None;
        }
        let home = tempfile::tempdir().expect("temp dir");
        std::fs::set_permissions(
            home.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .expect("chmod");
        Some(Self { home })
    }

    /// Its home directory (`GNUPGHOME`).
    pub(crate) fn home(&self) -> &Path {
        self.home.path()
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        Command::new("gpg")
            .env("GNUPGHOME", self.home.path())
            .args(["--batch", "--pinentry-mode", "loopback"])
            .args(args)
            .output()
            .expect("gpg runs")
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "gpg-agent"])
            .status();
    }
}
