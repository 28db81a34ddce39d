//! A small SMTP server for the e-mail tests: it speaks real SMTP over TCP on a local port (RFC
//! 5321's greeting, EHLO, MAIL, RCPT, DATA with dot-stuffing, RSET, NOOP, QUIT), keeps every
//! message it accepts with its envelope, and refuses the recipients it is told to with the reply
//! it is given, as a mail server does.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// A message as it arrived: the envelope and the raw message.
#[derive(Debug, Clone)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub data: Vec<u8>,
}

impl Received {
    pub fn parsed(&self) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default()
            .parse(&self.data)
            .expect("a parseable message")
    }
}

#[derive(Default)]
struct State {
    messages: Vec<Received>,
    /// Recipient address → the reply its RCPT gets instead of 250.
    refusals: HashMap<String, String>,
    /// RCPT commands seen per recipient, accepted or not.
    attempts: HashMap<String, usize>,
}

pub struct SmtpReceiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SmtpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SmtpReceiver {
    pub async fn start() -> SmtpReceiver {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a local port");
        let addr = listener.local_addr().expect("local address");
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(session(stream, shared.clone()));
            }
        });
        SmtpReceiver { addr, state, task }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// From now on RCPT TO this address gets `reply` (such as `550 5.1.1 no such user`).
    pub fn refuse(&self, address: &str, reply: &str) {
        self.lock()
            .refusals
            .insert(address.to_lowercase(), reply.to_owned());
    }

    pub fn accept_again(&self, address: &str) {
        self.lock().refusals.remove(&address.to_lowercase());
    }

    pub fn messages(&self) -> Vec<Received> {
        self.lock().messages.clone()
    }

    /// How many times a delivery to this address was tried.
    pub fn attempts(&self, address: &str) -> usize {
        self.lock()
            .attempts
            .get(&address.to_lowercase())
            .copied()
            .unwrap_or(0)
    }

    /// Waits for the messages whose envelope names `address`, until `done` holds of them.
    pub async fn wait_for(
        &self,
        address: &str,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let to: Vec<Received> = self
                .messages()
                .into_iter()
                .filter(|m| m.rcpt_to.iter().any(|r| r.eq_ignore_ascii_case(address)))
                .collect();
            if done(&to) {
                return to;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no such mail to {address}: {} received",
                to.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The address between `<` and `>` of `MAIL FROM:<…>` or `RCPT TO:<…>`.
fn path(arg: &str) -> String {
    let start = arg.find('<').map_or(0, |i| i + 1);
    let end = arg[start..].find('>').map_or(arg.len(), |i| start + i);
    arg[start..end].trim().to_lowercase()
}

async fn reply(w: &mut tokio::net::tcp::OwnedWriteHalf, text: &str) -> bool {
    w.write_all(format!("{text}\r\n").as_bytes()).await.is_ok()
}

async fn session(stream: TcpStream, state: Arc<Mutex<State>>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    if !reply(&mut write, "220 receiver.test ESMTP ready").await {
        return;
    }
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        match lines.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let command = line.trim_end();
        let verb = command
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let answer = match verb.as_str() {
            "EHLO" => "250-receiver.test\r\n250-SIZE 10485760\r\n250 HELP".to_owned(),
            "HELO" | "NOOP" => "250 OK".to_owned(),
            "MAIL" => {
                from = path(&command[4..]);
                to.clear();
                "250 2.1.0 OK".to_owned()
            }
            "RCPT" => {
                let address = path(&command[4..]);
                let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                *s.attempts.entry(address.clone()).or_default() += 1;
                match s.refusals.get(&address) {
                    Some(refusal) => refusal.clone(),
                    None => {
                        to.push(address);
                        "250 2.1.5 OK".to_owned()
                    }
                }
            }
            "DATA" if to.is_empty() => "554 5.5.1 no valid recipients".to_owned(),
            "DATA" => {
                if !reply(&mut write, "354 end data with <CR><LF>.<CR><LF>").await {
                    return;
                }
                let mut data = Vec::new();
                loop {
                    let mut raw = Vec::new();
                    match lines.read_until(b'\n', &mut raw).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    if raw == b".\r\n" || raw == b".\n" {
                        break;
                    }
                    // Dot-stuffing: a line that starts with a dot was sent with one more.
                    let unstuffed = raw.strip_prefix(b".").unwrap_or(&raw);
                    data.extend_from_slice(unstuffed);
                }
                state
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .messages
                    .push(Received {
                        mail_from: std::mem::take(&mut from),
                        rcpt_to: std::mem::take(&mut to),
                        data,
                    });
                "250 2.0.0 queued".to_owned()
            }
            "RSET" => {
                from.clear();
                to.clear();
                "250 2.0.0 OK".to_owned()
            }
            "QUIT" => {
                let _ = reply(&mut write, "221 2.0.0 bye").await;
                return;
            }
            _ => "502 5.5.2 command not recognised".to_owned(),
        };
        if !reply(&mut write, &answer).await {
            return;
        }
    }
}
