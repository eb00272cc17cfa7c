//! Property tests of the manifest reader on generated input: random text,
//! and text assembled from YAML's own tokens and the manifest's keys (so
//! that deep structures, anchors, aliases and odd scalars are reached). The
//! reader returns a manifest or diagnostics, never panics, and every
//! diagnostic names a position inside the text. A fixed number of cases
//! per run (PROPTEST_CASES to change it), so CI time stays bounded.

use std::path::Path;

use proptest::prelude::*;

const TOKENS: &[&str] = &[
    "apiVersion: bundle.gravitational.io/v2\n",
    "kind: Bundle\n",
    "metadata:\n",
    "  name: shop\n",
    "  resourceVersion: 1.0.0\n",
    "nodeProfiles:\n",
    "  - name: n\n",
    "    requirements:\n",
    "      cpu: {min: 1}\n",
    "      ram: {min: 1GB}\n",
    "installer:\n",
    "  flavors:\n",
    "hooks:\n",
    "  install:\n",
    "    job: |\n",
    "images:\n",
    "  - nginx:1.25\n",
    "systemOptions:\n",
    "- ",
    "  ",
    "\n",
    "&a ",
    "*a",
    "&b ",
    "*b",
    "{",
    "}",
    "[",
    "]",
    ": ",
    ", ",
    "'",
    "\"",
    "|",
    ">",
    "---\n",
    "...\n",
    "!!binary ",
    "!custom ",
    "~",
    "null",
    "0x7fffffffffffffffffff",
    "1e999",
    "-.inf",
    "\u{feff}",
    "\t",
    "#",
    "%YAML 1.2\n",
    "? ",
    "é",
    "\u{1b}[2J",
    "\\",
    "\r\n",
];

fn assembled() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..200).prop_map(|t| t.concat())
}

fn check(text: &str) {
    if let Err(e) = tele_manifests::parse_manifest(Path::new("app.yaml"), text) {
        // YAML breaks lines at \n, \r\n and a lone \r.
        let breaks =
            text.matches('\n').count() + text.matches('\r').count() - text.matches("\r\n").count();
        // (the end of the text may be reported on the line after it)
        let lines = breaks + 2;
        for d in e.diagnostics() {
            assert!(
                d.location.line >= 1 && d.location.line <= lines,
                "{d} in {text:?}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(512),
        // Nothing written into the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_text_never_panics(text in ".{0,400}") {
        check(&text);
    }

    #[test]
    fn yaml_shaped_text_never_panics(text in assembled()) {
        check(&text);
    }
}
