//! Under a 256-descriptor limit, 300 idle client connections do not take the gateway down:
//! the connection cap sheds the excess with a 503 problem, the operators' listener keeps
//! answering health checks, and the API answers again as soon as connections free up.
//!
//! The gateway runs as a child process (its own descriptor table and limit), started from
//! the real binary.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text)
}

#[test]
fn a_descriptor_limit_sheds_connections_and_health_checks_keep_answering() {
    let (api, ops) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("medgate-fds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("medgate.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{api}\"\nops_listen = \"127.0.0.1:{ops}\"\nidle_timeout_ms = 60000\n[auth]\nrequired = false\n[store]\nurl = \"sqlite://{}\"\n[audit]\npath = {:?}\n",
            dir.join("store.db").display(),
            dir.join("audit.jsonl").display().to_string()
        ),
    )
    .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_medgate"));
    command
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setrlimit is async-signal-safe; it runs in the child between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 256,
                rlim_max: 256,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let _gateway = Gateway(command.spawn().unwrap());
    let started = Instant::now();
    while get(ops, "/healthz").is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the gateway did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let mut idle = Vec::new();
    for _ in 0..300 {
        if let Ok(c) = TcpStream::connect(("127.0.0.1", api)) {
            idle.push(c);
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    // The excess was answered and closed, not left hanging.
    let mut shed = 0;
    for c in &mut idle {
        c.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let mut buf = [0u8; 512];
        if let Ok(n) = c.read(&mut buf) {
            if n > 0 && String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 503") {
                shed += 1;
            }
        }
    }
    assert!(
        shed >= 100,
        "connections beyond the cap are shed with a 503, got {shed}"
    );
    let health = get(ops, "/healthz").expect("the operators' listener answers");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let over = get(api, "/healthz").expect("a close or an answer, not a hang");
    assert!(
        over.starts_with("HTTP/1.1 503") && over.contains("connection limit"),
        "{over}"
    );

    drop(idle);
    std::thread::sleep(Duration::from_millis(300));
    let again = get(api, "/healthz").expect("answers again");
    assert!(again.starts_with("HTTP/1.1 200"), "{again}");
    let _ = std::fs::remove_dir_all(&dir);
}
