//! A real IMAP server for the tests and the inbound-mail benchmark: Debian's Dovecot, started in a
//! temporary directory of its own with one throwaway account, on a local port; messages are
//! delivered into the account's Maildir as a mail delivery agent does (written in `tmp/`, then
//! renamed into `new/`). `scripts/test` installs Dovecot when it is missing.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// The account's name and password.
pub const USER: &str = "pqrs";
pub const PASSWORD: &str = "clave-de-prueba";

/// How the server is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Plain IMAP on a local port.
    Plain,
    /// IMAP over TLS from the first byte, with a certificate for `localhost` from a CA of the
    /// test's own ([`Dovecot::ca_file`]).
    Tls,
    /// Plain IMAP that must be upgraded with STARTTLS before logging in, with the same
    /// certificate.
    StartTls,
}

pub struct Dovecot {
    dir: PathBuf,
    child: Child,
    pub port: u16,
    delivered: u64,
}

fn binary() -> PathBuf {
    ["/usr/sbin/dovecot", "/usr/local/sbin/dovecot"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect(
            "Dovecot is not installed: scripts/test installs it (apt-get install dovecot-imapd)",
        )
}

fn run(cmd: &mut std::process::Command) {
    let out = cmd.output().expect("running openssl");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a certificate for `localhost` it signed, in `dir`.
fn certificates(dir: &Path) {
    let p = |name: &str| dir.join(name);
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    run(std::process::Command::new("openssl")
        .args(["req", "-x509"])
        .args(ec)
        .args(["-subj", "/CN=Atiende test CA", "-days", "2"])
        .arg("-keyout")
        .arg(p("ca.key"))
        .arg("-out")
        .arg(p("ca.pem")));
    run(std::process::Command::new("openssl")
        .arg("req")
        .args(ec)
        .args(["-subj", "/CN=localhost"])
        .arg("-keyout")
        .arg(p("key.pem"))
        .arg("-out")
        .arg(p("req.csr")));
    std::fs::write(
        p("ext.cnf"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("extensions");
    run(std::process::Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
        .arg("-in")
        .arg(p("req.csr"))
        .arg("-CA")
        .arg(p("ca.pem"))
        .arg("-CAkey")
        .arg(p("ca.key"))
        .arg("-extfile")
        .arg(p("ext.cnf"))
        .arg("-out")
        .arg(p("cert.pem")));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Dovecot {
    /// Starts a Dovecot of its own; a port another process took meanwhile is tried again.
    pub async fn start(security: Security) -> Dovecot {
        let dir = std::env::temp_dir().join(format!("atiende-dovecot-{}", uuid::Uuid::new_v4()));
        let maildir = dir.join("home").join(USER).join("Maildir");
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(maildir.join(sub)).expect("maildir");
        }
        std::fs::create_dir_all(dir.join("run")).expect("run dir");
        std::fs::create_dir_all(dir.join("state")).expect("state dir");
        // Mail is read as `nobody`, never as root (Dovecot refuses that).
        run(std::process::Command::new("chown")
            .args(["-R", "nobody:nogroup"])
            .arg(dir.join("home")));
        std::fs::write(
            dir.join("passwd"),
            format!("{USER}:{{PLAIN}}{PASSWORD}::::::\n"),
        )
        .expect("passwd");
        if security != Security::Plain {
            certificates(&dir);
        }
        for _ in 0..10 {
            let port = free_port();
            let d = dir.display();
            let tls = format!("ssl = required\nssl_cert = <{d}/cert.pem\nssl_key = <{d}/key.pem\n");
            let (plain_port, tls_port, ssl) = match security {
                Security::Plain => (port, 0, "ssl = no\n".to_owned()),
                Security::Tls => (0, port, tls),
                Security::StartTls => (port, 0, tls),
            };
            let conf = format!(
                "base_dir = {d}/run\nstate_dir = {d}/state\nlog_path = {d}/dovecot.log\n\
                 protocols = imap\nlisten = 127.0.0.1\n{ssl}disable_plaintext_auth = no\n\
                 auth_mechanisms = plain login\nmail_location = maildir:~/Maildir\n\
                 passdb {{\n  driver = passwd-file\n  args = {d}/passwd\n}}\n\
                 userdb {{\n  driver = static\n  args = uid=nobody gid=nogroup home={d}/home/%u\n}}\n\
                 service imap-login {{\n  chroot =\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {plain_port}\n  }}\n\
                 inet_listener imaps {{\n    address = 127.0.0.1\n    port = {tls_port}\n    ssl = yes\n  }}\n}}\n\
                 service anvil {{\n  chroot =\n}}\n"
            );
            std::fs::write(dir.join("dovecot.conf"), conf).expect("config");
            let mut child = Command::new(binary())
                .arg("-F")
                .arg("-c")
                .arg(dir.join("dovecot.conf"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("starting Dovecot");
            for _ in 0..200 {
                if tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
                {
                    return Dovecot {
                        dir,
                        child,
                        port,
                        delivered: 0,
                    };
                }
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            let _ = child.kill().await;
        }
        let log = std::fs::read_to_string(dir.join("dovecot.log")).unwrap_or_default();
        panic!("Dovecot did not start:\n{log}");
    }

    /// The CA that signed the TLS certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn maildir(&self) -> PathBuf {
        self.dir.join("home").join(USER).join("Maildir")
    }

    /// Delivers a message into the inbox, unread.
    pub fn deliver(&mut self, raw: &[u8]) {
        self.delivered += 1;
        let name = format!(
            "{}.M{}P{}.atiende",
            1_700_000_000 + self.delivered,
            self.delivered,
            std::process::id()
        );
        let tmp = self.maildir().join("tmp").join(&name);
        std::fs::write(&tmp, raw).expect("writing the message");
        run(std::process::Command::new("chown")
            .arg("nobody:nogroup")
            .arg(&tmp));
        std::fs::rename(&tmp, self.maildir().join("new").join(&name)).expect("delivering");
    }

    /// How many messages of the inbox are marked seen, and how many are not.
    pub fn seen_and_unseen(&self) -> (usize, usize) {
        let names = |sub: &str| -> Vec<String> {
            std::fs::read_dir(self.maildir().join(sub))
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        let cur = names("cur");
        let seen = cur
            .iter()
            .filter(|n| {
                n.rsplit_once(":2,")
                    .is_some_and(|(_, flags)| flags.contains('S'))
            })
            .count();
        (seen, cur.len() - seen + names("new").len())
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
