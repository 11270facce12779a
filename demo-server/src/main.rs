//! `mcp-warden-demo`: the demo MCP server bundled with mcp-warden.
//!
//! It is the first upstream users put behind the proxy, and the upstream mcp-warden's own tests
//! and benchmark use. It speaks MCP (revision 2025-11-25; 2025-06-18, 2025-03-26 and 2024-11-05
//! are accepted too) over JSON-RPC 2.0, hand-written, on either transport:
//!
//! - **stdio** (default): newline-delimited JSON on stdin/stdout, logs on stderr, exits on EOF;
//! - **Streamable HTTP** on `/mcp` (`http --listen ADDR`), announcing itself with one stdout line
//!   `listening on http://ADDR/mcp`.
//!
//! Tools: `echo`, `add`, `image`, `slow` (progress, cancellation), `send_email` (the server side
//! of mcp-warden's *consent envelope*: it answers with an envelope and a single-use `action_id`
//! instead of sending, and sends only when called again with that `confirmation_token` and the
//! same arguments) and `sent_count`. With `--test-tools`, also tools that misbehave on purpose
//! (`crash`, `hang`, `garbage`) or exercise the protocol (`notify_list_changed`, `sample`,
//! `elicit`). There is one prompt (`greeting`) and a few resources (`demo://readme`,
//! `demo://item/{id}`).
//!
//! Module map: [`rpc`] (JSON-RPC framing and cancellation bookkeeping), [`server`] (MCP method
//! dispatch), [`tools`], [`consent`] (the envelope logic), [`peer`] (talking back to the client),
//! [`stdio`] and [`http`] (the transports).

mod consent;
mod http;
mod peer;
mod rpc;
mod server;
mod stdio;
mod tools;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use server::{Options, Server};

const USAGE: &str = "\
mcp-warden-demo: the demo MCP server bundled with mcp-warden

Usage:
  mcp-warden-demo [stdio] [--test-tools]
  mcp-warden-demo http [--listen ADDR] [--test-tools]
  mcp-warden-demo --help | --version

Modes:
  stdio           newline-delimited JSON-RPC on stdin/stdout (the default); exits on stdin EOF
  http            Streamable HTTP on http://ADDR/mcp; prints `listening on http://ADDR/mcp`
                  on stdout once bound

Options:
  --listen ADDR   address to bind in http mode (default 127.0.0.1:0, i.e. any free port)
  --test-tools    also offer the test tools: crash, hang, garbage, notify_list_changed,
                  sample, elicit
  -h, --help      print this help
  -V, --version   print the version

Environment:
  DEMO_CONSENT_TTL_SECS   lifetime of a send_email action_id in seconds (default 60)
";

const DEFAULT_LISTEN: &str = "127.0.0.1:0";
const DEFAULT_CONSENT_TTL_SECS: u64 = 60;

#[derive(Debug, PartialEq)]
enum Mode {
    Stdio,
    Http(SocketAddr),
}

#[derive(Debug, PartialEq)]
enum Command {
    Help,
    Version,
    Serve { mode: Mode, test_tools: bool },
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut mode: Option<String> = None;
    let mut listen: Option<String> = None;
    let mut test_tools = false;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--test-tools" => test_tools = true,
            "--listen" => match args.next() {
                Some(addr) => listen = Some(addr),
                None => return Err("--listen needs an address, e.g. 127.0.0.1:8080".into()),
            },
            "stdio" | "http" if mode.is_none() => mode = Some(arg),
            _ => {
                if let Some(addr) = arg.strip_prefix("--listen=") {
                    listen = Some(addr.to_owned());
                } else {
                    return Err(format!("unexpected argument `{arg}`"));
                }
            }
        }
    }
    let mode = match (mode.as_deref(), listen) {
        (None | Some("stdio"), None) => Mode::Stdio,
        (None | Some("stdio"), Some(_)) => {
            return Err("--listen only applies to http mode".into());
        }
        (Some(_), listen) => {
            let listen = listen.as_deref().unwrap_or(DEFAULT_LISTEN);
            let addr = listen
                .parse()
                .map_err(|_| format!("--listen: `{listen}` is not an IP:PORT address"))?;
            Mode::Http(addr)
        }
    };
    Ok(Command::Serve { mode, test_tools })
}

fn consent_ttl() -> Duration {
    let secs = match std::env::var("DEMO_CONSENT_TTL_SECS") {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| {
            eprintln!(
                "mcp-warden-demo: ignoring DEMO_CONSENT_TTL_SECS={v:?} (not a whole number of \
                 seconds); using {DEFAULT_CONSENT_TTL_SECS}"
            );
            DEFAULT_CONSENT_TTL_SECS
        }),
        Err(_) => DEFAULT_CONSENT_TTL_SECS,
    };
    Duration::from_secs(secs)
}

/// `N` random bytes as lowercase hex, or `None` if the OS has no randomness to give.
pub(crate) fn random_hex<const N: usize>() -> Option<String> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).ok()?;
    let mut s = String::with_capacity(2 * N);
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    Some(s)
}

fn main() -> ExitCode {
    let command = match parse_args(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mcp-warden-demo: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let (mode, test_tools) = match command {
        Command::Help => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Command::Version => {
            println!("mcp-warden-demo {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Command::Serve { mode, test_tools } => (mode, test_tools),
    };
    let server = Server::new(&Options {
        test_tools,
        consent_ttl: consent_ttl(),
    });
    match mode {
        Mode::Stdio => stdio::run(server),
        Mode::Http(addr) => http::run(server, addr),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    fn serve(mode: Mode, test_tools: bool) -> Result<Command, String> {
        Ok(Command::Serve { mode, test_tools })
    }

    #[test]
    fn cli() {
        let any_port: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let port_8080: SocketAddr = "127.0.0.1:8080".parse().expect("addr");
        assert_eq!(parse(&[]), serve(Mode::Stdio, false));
        assert_eq!(parse(&["stdio"]), serve(Mode::Stdio, false));
        assert_eq!(parse(&["--test-tools", "stdio"]), serve(Mode::Stdio, true));
        assert_eq!(parse(&["http"]), serve(Mode::Http(any_port), false));
        assert_eq!(
            parse(&["http", "--listen", "127.0.0.1:8080", "--test-tools"]),
            serve(Mode::Http(port_8080), true)
        );
        assert_eq!(
            parse(&["--test-tools", "http", "--listen=127.0.0.1:8080"]),
            serve(Mode::Http(port_8080), true)
        );
        assert_eq!(parse(&["http", "--help"]), Ok(Command::Help));
        assert!(parse(&["stdio", "--listen", "127.0.0.1:1"]).is_err());
        assert!(parse(&["http", "--listen"]).is_err());
        assert!(parse(&["http", "--listen", "nope"]).is_err());
        assert!(parse(&["http", "http"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
    }

    #[test]
    fn random_hex_is_hex() {
        let a = random_hex::<16>().expect("randomness");
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        assert_ne!(Some(a), random_hex::<16>());
    }
}
