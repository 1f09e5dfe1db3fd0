//! A fault-injecting RTSP server (TCP interleaved only) for what a real server will not do: a
//! 404 path, an SDP that is not one, RTP packets of garbage, and a real H.264 stream whose NAL
//! units are cut short and bit-flipped. 127.0.0.1 only; one thread per connection.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    /// DESCRIBE of any path: 404.
    NotFound,
    /// DESCRIBE: 200 with a body that is not SDP.
    WrongSdp,
    /// After PLAY: interleaved RTP packets with random payloads.
    GarbageRtp,
    /// After PLAY: the H.264 stream given, with every third NAL unit truncated and bytes flipped.
    DamagedH264,
}

pub struct FaultyRtsp {
    pub port: u16,
}

impl FaultyRtsp {
    /// `stream`: an Annex B H.264 stream for `DamagedH264`.
    pub fn start(fault: Fault, stream: Vec<u8>) -> FaultyRtsp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let stream = stream.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, fault, &stream);
                });
            }
        });
        FaultyRtsp { port }
    }

    pub fn url(&self) -> String {
        format!("rtsp://127.0.0.1:{}/cam", self.port)
    }
}

fn serve(conn: TcpStream, fault: Fault, stream: &[u8]) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    loop {
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if line == "\r\n" {
                break;
            }
            head.push(line);
        }
        let method = head.first().and_then(|l| l.split(' ').next()).unwrap_or("").to_string();
        let cseq = head
            .iter()
            .find_map(|l| l.strip_prefix("CSeq:").or_else(|| l.strip_prefix("Cseq:")))
            .map_or("0".to_string(), |v| v.trim().to_string());
        let url = head.first().and_then(|l| l.split(' ').nth(1)).unwrap_or("").to_string();
        let reply = |status: &str, headers: &str, body: &str| {
            format!("RTSP/1.0 {status}\r\nCSeq: {cseq}\r\n{headers}Content-Length: {}\r\n\r\n{body}", body.len())
        };
        let text = match (method.as_str(), fault) {
            ("OPTIONS", _) => reply("200 OK", "Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN\r\n", ""),
            ("DESCRIBE", Fault::NotFound) => reply("404 Not Found", "", ""),
            ("DESCRIBE", Fault::WrongSdp) => {
                reply("200 OK", "Content-Type: application/sdp\r\n", "this is not a session description\r\n")
            }
            ("DESCRIBE", _) => {
                let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=faulty\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\n\
                           a=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\na=control:track1\r\n";
                reply("200 OK", &format!("Content-Type: application/sdp\r\nContent-Base: {url}/\r\n"), sdp)
            }
            ("SETUP", _) => reply("200 OK", "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\nSession: 4242;timeout=60\r\n", ""),
            ("PLAY", _) => {
                out.write_all(reply("200 OK", "Session: 4242\r\n", "").as_bytes())?;
                return play(&mut out, fault, stream);
            }
            _ => reply("200 OK", "Session: 4242\r\n", ""),
        };
        out.write_all(text.as_bytes())?;
    }
}

fn play(out: &mut TcpStream, fault: Fault, stream: &[u8]) -> std::io::Result<()> {
    let mut rng = 0x9e37_79b9u32;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        rng
    };
    let (mut seq, mut ts) = (0u16, 0u32);
    let mut send = |out: &mut TcpStream, payload: &[u8], marker: bool, ts: u32| {
        let mut rtp = vec![0x80, if marker { 0xe0 } else { 0x60 }];
        rtp.extend_from_slice(&seq.to_be_bytes());
        rtp.extend_from_slice(&ts.to_be_bytes());
        rtp.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        rtp.extend_from_slice(payload);
        seq = seq.wrapping_add(1);
        let mut frame = vec![b'$', 0];
        frame.extend_from_slice(&(rtp.len() as u16).to_be_bytes());
        frame.extend_from_slice(&rtp);
        out.write_all(&frame)
    };
    loop {
        match fault {
            Fault::GarbageRtp => {
                for _ in 0..30 {
                    let len = 1 + next() as usize % 1200;
                    let payload: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                    send(out, &payload, next() % 4 == 0, ts)?;
                }
            }
            _ => {
                let nals: Vec<&[u8]> = split_annex_b(stream);
                for (i, nal) in nals.iter().enumerate() {
                    let mut nal = nal.to_vec();
                    if i % 3 == 2 && nal.len() > 8 {
                        nal.truncate(nal.len() / 2);
                        let at = 4 + next() as usize % (nal.len() - 4);
                        nal[at] ^= 0x5a;
                    }
                    let last_of_picture = nal.first().is_some_and(|b| matches!(b & 0x1f, 1 | 5));
                    packetize(&nal, |payload, end| send(out, payload, end && last_of_picture, ts))?;
                    if last_of_picture {
                        ts = ts.wrapping_add(3600);
                        std::thread::sleep(Duration::from_millis(40));
                    }
                }
            }
        }
        ts = ts.wrapping_add(3600);
        std::thread::sleep(Duration::from_millis(40));
    }
}

/// RFC 6184: a single NAL unit packet, or FU-A fragments of at most 1200 bytes.
fn packetize(
    nal: &[u8],
    mut send: impl FnMut(&[u8], bool) -> std::io::Result<()>,
) -> std::io::Result<()> {
    if nal.len() <= 1200 {
        return send(nal, true);
    }
    let (header, body) = (nal[0], &nal[1..]);
    let chunks: Vec<&[u8]> = body.chunks(1200).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let (start, end) = (i == 0, i == chunks.len() - 1);
        let mut p = vec![(header & 0xe0) | 28, (header & 0x1f) | if start { 0x80 } else { 0 } | if end { 0x40 } else { 0 }];
        p.extend_from_slice(chunk);
        send(&p, end)?;
    }
    Ok(())
}

fn split_annex_b(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i..i + 3] == [0, 0, 1] {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    starts
        .iter()
        .enumerate()
        .map(|(k, &s)| {
            let end = starts.get(k + 1).map_or(data.len(), |&n| n - 3);
            let nal = &data[s..end];
            nal.strip_suffix(&[0]).unwrap_or(nal)
        })
        .collect()
}
