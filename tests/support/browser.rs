//! A real browser for the tests: Debian's headless Chromium driven over
//! WebDriver (chromedriver), with curl as the HTTP client.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{free_port, ok, run, stdout, wait_for_port, KillOnDrop};

/// A WebDriver session of chromedriver on `port`.
pub struct Browser {
    base: String,
    session: String,
    _driver: KillOnDrop,
}

fn curl_json(method: &str, url: &str, body: Option<&serde_json::Value>) -> serde_json::Value {
    let mut c = Command::new("curl");
    c.args(["-sS", "--max-time", "120", "-X", method, url]);
    if let Some(b) = body {
        c.args(["-H", "Content-Type: application/json", "-d", &b.to_string()]);
    }
    let o = ok(&mut c);
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{url}: {e}: {}", stdout(&o)))
}

impl Browser {
    pub fn start() -> Browser {
        let port = free_port();
        let driver = KillOnDrop(
            Command::new("chromedriver")
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver runs (apt-get install chromium-driver)"),
        );
        let base = format!("http://127.0.0.1:{port}");
        wait_for_port(&format!("127.0.0.1:{port}"));
        let caps = serde_json::json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            // The wizard's certificate is the new cluster's CA's, which this
            // browser does not know; the test compares its fingerprint instead.
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,900"]
            }
        }}});
        let v = curl_json("POST", &format!("{base}/session"), Some(&caps));
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {v}"))
            .to_string();
        Browser {
            base,
            session,
            _driver: driver,
        }
    }

    pub fn call(&self, method: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let body = (method == "POST").then_some(body);
        let v = curl_json(method, &url, body.as_ref());
        if v["value"]["error"].is_string() {
            panic!("WebDriver {method} {path}: {}", v["value"]);
        }
        v["value"].clone()
    }

    pub fn go(&self, url: &str) {
        self.call("POST", "/url", serde_json::json!({ "url": url }));
    }

    pub fn js(&self, script: &str) -> serde_json::Value {
        self.call(
            "POST",
            "/execute/sync",
            serde_json::json!({ "script": script, "args": [] }),
        )
    }

    pub fn element(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            "/element",
            serde_json::json!({"using": "css selector", "value": css}),
        );
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(|v| v.as_str())
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    pub fn click(&self, css: &str) {
        let id = self.element(css);
        self.call(
            "POST",
            &format!("/element/{id}/click"),
            serde_json::json!({}),
        );
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.call(
            "POST",
            &format!("/element/{id}/clear"),
            serde_json::json!({}),
        );
        self.call(
            "POST",
            &format!("/element/{id}/value"),
            serde_json::json!({ "text": text }),
        );
    }

    pub fn text(&self, css: &str) -> String {
        let id = self.element(css);
        self.call("GET", &format!("/element/{id}/text"), serde_json::json!({}))
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Opens the wizard's `url` (with its token) and waits for its LOCATION
    /// step to show the example app, `hello`.
    pub fn open_wizard(&self, url: &str) {
        self.go(url);
        self.wait_for(
            "the LOCATION step",
            "document.querySelector('#location') && !document.querySelector('#location').hidden && document.querySelector('#app-name').textContent === 'hello'",
            Duration::from_secs(30),
        );
    }

    /// With TELE_WIZARD_SCREENSHOTS=DIR, saves what the browser shows as DIR/NAME.png.
    pub fn screenshot(&self, name: &str) {
        let Ok(dir) = std::env::var("TELE_WIZARD_SCREENSHOTS") else {
            return;
        };
        use base64::Engine;
        let png = self.call("GET", "/screenshot", serde_json::json!({}));
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap_or_default())
            .unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(Path::new(&dir).join(format!("{name}.png")), bytes).unwrap();
    }

    /// Waits until `script` (a JS expression) is true.
    pub fn wait_for(&self, what: &str, script: &str, limit: Duration) {
        let began = Instant::now();
        loop {
            if self.js(&format!("return !!({script});")) == serde_json::json!(true) {
                return;
            }
            assert!(
                began.elapsed() < limit,
                "{what}: not within {}s; the page says: {}",
                limit.as_secs(),
                self.js("return document.body.innerText;")
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = Command::new("curl")
            .args(["-sS", "-X", "DELETE"])
            .arg(format!("{}/session/{}", self.base, self.session))
            .output();
    }
}

/// On a cloud, the rest of the wizard after its card was checked: CAPACITY
/// with the flavor `two` and `kind` as the made machine's instance type or
/// VM size, the install, and, once this node is installed and waits for
/// that machine (which these tests do not play), Finish; the installer then
/// ends with success and stops serving at `ip`.
pub fn install_two_on_a_cloud(b: &Browser, wizard: WizardInstaller, kind: &str, ip: &str) {
    b.click("#to-capacity");
    b.wait_for(
        "the CAPACITY step",
        "!document.querySelector('#capacity').hidden",
        Duration::from_secs(5),
    );
    b.click("#flavor-two");
    b.wait_for(
        "the machine type of node",
        "document.querySelector('#type-node') !== null",
        Duration::from_secs(5),
    );
    // The install makes the machine: no join command is shown.
    assert_eq!(b.js("return document.querySelector('#line').hidden;"), true);
    b.type_into("#type-node", kind);
    b.click("#start-install");
    b.wait_for(
        "this node installed, waiting for the made machine",
        "!document.querySelector('#joining').hidden",
        Duration::from_secs(600),
    );
    b.click("#finish");
    b.wait_for(
        "the install done",
        "document.querySelector('#install-state').textContent === 'The install is done.'",
        Duration::from_secs(60),
    );
    let (status, out, rest) = wizard.wait();
    assert!(status.success(), "{out}\n{rest}");
    assert_eq!(status_of(&[&format!("https://{ip}:61009/")]), "000");
}

/// The HTTP status of a request to the wizard with curl (certificate not
/// checked); `000` when nothing answers.
pub fn status_of(args: &[&str]) -> String {
    stdout(&run(Command::new("curl")
        .args([
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "20",
        ])
        .args(args)))
}

/// `./install --wizard` running: where its page is, and its output once it ends.
pub struct WizardInstaller {
    child: KillOnDrop,
    /// The address it printed, with the one-time token.
    pub url: String,
    /// The certificate's fingerprint it printed.
    pub fingerprint: String,
    out: JoinHandle<String>,
    err: JoinHandle<String>,
}

impl WizardInstaller {
    /// Starts `installer` (an `./install --wizard` command) and reads its
    /// standard error until it has said where the wizard is.
    pub fn spawn(mut installer: Command) -> WizardInstaller {
        installer.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = installer.spawn().expect("the installer starts");
        let stdout_pipe = child.stdout.take().unwrap();
        let out = std::thread::spawn(move || {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut BufReader::new(stdout_pipe), &mut s).unwrap();
            s
        });
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let child = KillOnDrop(child);
        let (mut url, mut fingerprint, mut said) = (None, None, String::new());
        while url.is_none() || fingerprint.is_none() {
            let Some(Ok(line)) = lines.next() else {
                panic!("the installer stopped before saying where the wizard is:\n{said}")
            };
            said.push_str(&line);
            said.push('\n');
            let t = line.trim();
            if t.starts_with("https://") {
                url = Some(t.to_string());
            } else if t.len() == 95 && t.chars().filter(|c| *c == ':').count() == 31 {
                fingerprint = Some(t.to_string());
            }
        }
        // The rest is drained so that the installer never blocks on it.
        let err =
            std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>().join("\n"));
        WizardInstaller {
            child,
            url: url.unwrap(),
            fingerprint: fingerprint.unwrap(),
            out,
            err,
        }
    }

    /// Waits (at most 90 s) for the installer to end: how, its standard
    /// output and the rest of its standard error.
    pub fn wait(mut self) -> (ExitStatus, String, String) {
        let began = Instant::now();
        let status = loop {
            if let Some(s) = self.child.0.try_wait().unwrap() {
                break s;
            }
            assert!(
                began.elapsed() < Duration::from_secs(90),
                "the installer did not end"
            );
            std::thread::sleep(Duration::from_millis(500));
        };
        (status, self.out.join().unwrap(), self.err.join().unwrap())
    }
}
