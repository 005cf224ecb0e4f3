//! Desktop services for the app's tests, each private to the test that starts it: a D-Bus
//! session bus (with no service activation, so nothing real is started behind our back),
//! a GNOME Keyring Secret Service on it, and an X server.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A private `dbus-daemon`; killed on drop.
pub struct SessionBus {
    child: Child,
    pub address: String,
    pub dir: tempfile::TempDir,
}

impl SessionBus {
    pub fn start() -> SessionBus {
        let dir = tempfile::tempdir().expect("bus dir");
        let socket = dir.path().join("bus");
        let config = dir.path().join("bus.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                socket.display()
            ),
        )
        .expect("bus config");
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("dbus-daemon (Debian package dbus-daemon) must be installed");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("bus address");
        let address = line.trim().to_owned();
        assert!(!address.is_empty(), "dbus-daemon printed no address");
        SessionBus {
            child,
            address,
            dir,
        }
    }

    /// `DBUS_SESSION_BUS_ADDRESS` plus private HOME / XDG dirs under the bus's temp dir, so
    /// nothing a test starts touches the real home. `DBUS_SYSTEM_BUS_ADDRESS` points at this
    /// bus too, where no NetworkManager or UPower runs: the app's metered/battery watcher
    /// then reads "unknown" instead of the host's real state (a test wanting those starts a
    /// second bus with stand-ins and points the variable there).
    pub fn env(&self) -> Vec<(String, String)> {
        let d = self.dir.path();
        let mk = |p: PathBuf| {
            std::fs::create_dir_all(&p).expect("xdg dir");
            p.display().to_string()
        };
        let runtime = mk(d.join("run"));
        let _ = std::fs::set_permissions(
            &runtime,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        );
        vec![
            ("DBUS_SESSION_BUS_ADDRESS".into(), self.address.clone()),
            ("DBUS_SYSTEM_BUS_ADDRESS".into(), self.address.clone()),
            ("HOME".into(), mk(d.join("home"))),
            ("XDG_DATA_HOME".into(), mk(d.join("home/.local/share"))),
            ("XDG_CONFIG_HOME".into(), mk(d.join("home/.config"))),
            ("XDG_CACHE_HOME".into(), mk(d.join("home/.cache"))),
            ("XDG_RUNTIME_DIR".into(), runtime),
        ]
    }

    /// Whether `name` has an owner on this bus.
    pub fn has_owner(&self, name: &str) -> bool {
        Command::new("dbus-send")
            .args([
                &format!("--bus={}", self.address),
                "--print-reply",
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.NameHasOwner",
                &format!("string:{name}"),
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("boolean true"))
            .unwrap_or(false)
    }

    /// Waits (bounded) until `name` is owned.
    pub fn wait_for_name(&self, name: &str, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.has_owner(name) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for SessionBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `gnome-keyring-daemon` serving the Secret Service on `bus`, its login keyring created
/// and unlocked with a throwaway password; killed on drop.
pub struct Keyring {
    child: Child,
}

impl Keyring {
    pub fn start(bus: &SessionBus) -> Keyring {
        let mut child = Command::new("gnome-keyring-daemon")
            .args(["--foreground", "--unlock", "--components=secrets"])
            .envs(bus.env())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("gnome-keyring-daemon (Debian package gnome-keyring) must be installed");
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(b"test-keyring-password");
        }
        assert!(
            bus.wait_for_name("org.freedesktop.secrets", Duration::from_secs(20)),
            "the Secret Service did not appear on the test bus"
        );
        Keyring { child }
    }
}

impl Drop for Keyring {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private X server (`Xvfb`); killed on drop.
pub struct Xvfb {
    child: Child,
    pub display: String,
}

impl Xvfb {
    /// Starts on the first free display from 140 upwards. A display whose lock file names
    /// a process that is gone (an Xvfb killed with SIGKILL leaves its lock and socket
    /// behind) counts as free: its leftovers are removed first.
    pub fn start() -> Xvfb {
        for n in 140..400 {
            let lock = format!("/tmp/.X{n}-lock");
            let socket = format!("/tmp/.X11-unix/X{n}");
            if Path::new(&lock).exists() || Path::new(&socket).exists() {
                if lock_holder_alive(&lock) {
                    continue;
                }
                let _ = std::fs::remove_file(&lock);
                let _ = std::fs::remove_file(&socket);
            }
            let mut child = Command::new("Xvfb")
                .args([
                    &format!(":{n}"),
                    "-screen",
                    "0",
                    "1280x800x24",
                    "-nolisten",
                    "tcp",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("Xvfb (Debian package xvfb) must be installed");
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if Path::new(&format!("/tmp/.X11-unix/X{n}")).exists() {
                    return Xvfb {
                        child,
                        display: format!(":{n}"),
                    };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break; // lost a race for this display; try the next
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("no free X display for Xvfb");
    }
}

/// Whether the X lock file at `path` names a running process (an unreadable or missing
/// lock with a socket is taken as held, to be safe).
fn lock_holder_alive(path: &str) -> bool {
    match std::fs::read_to_string(path) {
        Ok(text) => match text.trim().parse::<u32>() {
            Ok(pid) => Path::new(&format!("/proc/{pid}")).exists(),
            Err(_) => true,
        },
        Err(_) => true,
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
