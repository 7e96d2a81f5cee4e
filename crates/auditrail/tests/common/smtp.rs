//! A minimal SMTP server for the tests: accepts one message per connection and hands
//! over (recipient, data).

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// A minimal SMTP server: accepts one message per connection and hands it over.
pub async fn listener() -> (u16, tokio::sync::mpsc::UnboundedReceiver<(String, String)>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (sock, _) = l.accept().await.unwrap();
            let tx = tx.clone();
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut r = BufReader::new(r);
                w.write_all(b"220 test ESMTP\r\n").await.unwrap();
                let (mut rcpt, mut data) = (String::new(), String::new());
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).await.unwrap() == 0 {
                        return;
                    }
                    let cmd = line.to_ascii_uppercase();
                    if cmd.starts_with("EHLO") || cmd.starts_with("HELO") {
                        w.write_all(b"250 test\r\n").await.unwrap();
                    } else if cmd.starts_with("RCPT TO:") {
                        rcpt = line[8..].trim().trim_matches(['<', '>']).to_owned();
                        w.write_all(b"250 ok\r\n").await.unwrap();
                    } else if cmd.starts_with("DATA") {
                        w.write_all(b"354 go\r\n").await.unwrap();
                        loop {
                            line.clear();
                            r.read_line(&mut line).await.unwrap();
                            if line == ".\r\n" {
                                break;
                            }
                            data.push_str(&line);
                        }
                        w.write_all(b"250 queued\r\n").await.unwrap();
                        tx.send((rcpt.clone(), data.clone())).unwrap();
                    } else if cmd.starts_with("QUIT") {
                        w.write_all(b"221 bye\r\n").await.unwrap();
                        return;
                    } else {
                        w.write_all(b"250 ok\r\n").await.unwrap();
                    }
                }
            });
        }
    });
    (port, rx)
}

/// The next message `mail` receives within `secs`: (recipient, data).
pub async fn next_mail(
    mail: &mut tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
    secs: u64,
) -> (String, String) {
    tokio::time::timeout(std::time::Duration::from_secs(secs), mail.recv())
        .await
        .expect("no email arrived")
        .unwrap()
}
