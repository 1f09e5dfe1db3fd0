//! A real nginx on 127.0.0.1 serving a folder over TLS with a CA made at test time (openssl).
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    /// A CA and a server certificate for 127.0.0.1, valid from a day ago (issued before the
    /// binary under test was built, as real certificates are) for three days. Back-dating uses
    /// faketime when it is installed.
    pub fn create(dir: &Path, name: &str) -> Pki {
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let faketime = Command::new("faketime").arg("--version").output().is_ok();
        let sh = |script: &str| {
            let mut cmd = if faketime {
                let mut c = Command::new("faketime");
                c.args(["-f", "-1d", "sh"]);
                c
            } else {
                Command::new("sh")
            };
            let out = cmd.arg("-ec").arg(script).current_dir(&dir).output().expect("sh runs");
            assert!(out.status.success(), "openssl failed: {}", String::from_utf8_lossy(&out.stderr));
        };
        sh(&format!(
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem \
               -days 3 -subj /CN={name}-ca -addext basicConstraints=critical,CA:TRUE \
               -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
             openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out server.csr \
               -subj /CN=localhost 2>/dev/null
             printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > ext.cnf
             openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 3 \
               -extfile ext.cnf 2>/dev/null"
        ));
        Pki { dir }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
}

pub struct Nginx {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
}

impl Nginx {
    /// Serves `root` at `/` and, at 4 MiB/s, at `/slow/`.
    pub fn start(dir: &Path, root: &Path, pki: &Pki) -> Nginx {
        Nginx::start_with(dir, root, pki, "")
    }

    /// Like [`Nginx::start`], with `extra` nginx directives inside the server block (locations).
    pub fn start_with(dir: &Path, root: &Path, pki: &Pki, extra: &str) -> Nginx {
        let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("nginx is not installed: run scripts/setup-debian.sh (Debian package nginx-light)");
        let dir = dir.join("nginx");
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let d = dir.display();
        let r = root.display();
        let conf = format!(
            "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n\
             access_log {d}/access.log;\nclient_body_temp_path {d}/tmp;\nproxy_temp_path {d}/tmp;\n\
             fastcgi_temp_path {d}/tmp;\nuwsgi_temp_path {d}/tmp;\nscgi_temp_path {d}/tmp;\n\
             server {{\nlisten 127.0.0.1:{port} ssl;\nssl_certificate {cert};\nssl_certificate_key {key};\n\
             location / {{ root {r}; }}\nlocation /slow/ {{ alias {r}/; limit_rate 4m; }}\n{extra}\n}}\n}}\n",
            cert = pki.dir.join("server.pem").display(),
            key = pki.dir.join("server.key").display(),
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = Command::new(nginx)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nginx starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nginx did not listen: {}", std::fs::read_to_string(dir.join("error.log")).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(50));
        }
        Nginx { port, dir, child: Some(child) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}
