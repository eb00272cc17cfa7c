//! Bundle signatures. A vendor's key signs `bundle.json`, which holds the
//! size and sha256 of every file and the digest of every blob, so the
//! signature covers the whole bundle. The signature is ECDSA P-256 with
//! SHA-256 (the algorithm of cosign's keys), kept beside `bundle.json` in
//! [`SIGNATURE_FILE`], a Sigstore bundle (v0.3) holding a message
//! signature: a public-key hint, the digest of `bundle.json` and the
//! signature (DER, base64). There is no transparency-log entry: bundles are
//! signed and checked where no such service is reachable.
//!
//! Keys are PEM files: the private key PKCS#8 (`PRIVATE KEY`, written 0600),
//! the public key SubjectPublicKeyInfo (`PUBLIC KEY`), the formats OpenSSL
//! reads, so an admin can check a bundle without tele:
//!
//! ```text
//! jq -r .messageSignature.signature bundle.sigstore.json | base64 -d > bundle.sig
//! openssl dgst -sha256 -verify vendor.pub -signature bundle.sig bundle.json
//! ```

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _};
use sha2::{Digest as _, Sha256};

/// The signature's file, beside `bundle.json` at the top of the bundle.
pub const SIGNATURE_FILE: &str = "bundle.sigstore.json";
/// The media type of a Sigstore bundle, version 0.3.
pub const SIGSTORE_BUNDLE_V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// The most bytes read from a key or a signature file.
pub const MAX_KEY_OR_SIGNATURE_BYTES: u64 = 64 * 1024;

/// The DER prefix of a P-256 SubjectPublicKeyInfo: the algorithm
/// (id-ecPublicKey, prime256v1) and the bit string's header; the 65 bytes
/// of the uncompressed point follow.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// What is wrong with a key or a signature.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    /// A key file that is not a key of the kind needed.
    #[error("{0}")]
    BadKey(String),
    /// A signature file that cannot be read as one.
    #[error("the signature file is malformed: {0}")]
    Malformed(String),
    /// The signature was made for other contents of bundle.json.
    #[error("bundle.json is not what was signed: its sha256 differs from the signed digest")]
    DigestMismatch,
    /// The signature was not made by the key given (or was altered).
    #[error(
        "the signature does not match the key {expected} (it was made by another key, or altered)"
    )]
    WrongKey {
        /// The fingerprint of the key the bundle was checked against.
        expected: String,
    },
}

fn pem_decode(text: &str, label: &str) -> Result<Vec<u8>, SignatureError> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin).ok_or_else(|| {
        SignatureError::BadKey(format!("no `{begin}` block (a PEM file is needed)"))
    })?;
    let body = &text[start + begin.len()..];
    let stop = body
        .find(&end)
        .ok_or_else(|| SignatureError::BadKey(format!("the `{begin}` block has no end")))?;
    let b64: String = body[..stop].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| SignatureError::BadKey(format!("the PEM block is not base64: {e}")))
}

fn pem_encode(der: &[u8], label: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The text of a key file, at most [`MAX_KEY_OR_SIGNATURE_BYTES`].
pub fn read_key_file(path: &std::path::Path) -> Result<String, SignatureError> {
    use std::io::Read as _;
    let cannot = |e: &dyn std::fmt::Display| {
        SignatureError::BadKey(format!("cannot read the key {}: {e}", path.display()))
    };
    let f = std::fs::File::open(path).map_err(|e| cannot(&e))?;
    let mut bytes = Vec::new();
    f.take(MAX_KEY_OR_SIGNATURE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| cannot(&e))?;
    if bytes.len() as u64 > MAX_KEY_OR_SIGNATURE_BYTES {
        return Err(cannot(&"larger than 64 KiB: no PEM key is"));
    }
    String::from_utf8(bytes).map_err(|_| cannot(&"not text: a PEM file is needed"))
}

/// A vendor's signing key (ECDSA P-256).
pub struct SigningKey {
    pkcs8: Vec<u8>,
    pair: EcdsaKeyPair,
}

impl SigningKey {
    /// A new random key.
    pub fn generate() -> SigningKey {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .expect("the system's random source works");
        SigningKey::from_pkcs8(doc.as_ref()).expect("a key ring just made")
    }

    fn from_pkcs8(der: &[u8]) -> Result<SigningKey, SignatureError> {
        let pair = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            der,
            &SystemRandom::new(),
        )
        .map_err(|e| {
            SignatureError::BadKey(format!(
                "not an ECDSA P-256 private key ({e}); make one with `tele keygen`"
            ))
        })?;
        Ok(SigningKey {
            pkcs8: der.to_vec(),
            pair,
        })
    }

    /// Reads a PKCS#8 PEM private key (`tele keygen` writes one).
    pub fn from_pem(text: &str) -> Result<SigningKey, SignatureError> {
        if text.contains("-----BEGIN PUBLIC KEY-----") {
            return Err(SignatureError::BadKey(
                "this is a public key; signing needs the private key (the .key file of `tele keygen`)"
                    .into(),
            ));
        }
        SigningKey::from_pkcs8(&pem_decode(text, "PRIVATE KEY")?)
    }

    /// The private key as PKCS#8 PEM.
    pub fn to_pem(&self) -> String {
        pem_encode(&self.pkcs8, "PRIVATE KEY")
    }

    /// Its public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            point: self.pair.public_key().as_ref().to_vec(),
        }
    }

    /// The signature file (a Sigstore bundle) for `bundle_json`.
    pub fn sign(&self, bundle_json: &[u8]) -> Vec<u8> {
        let sig = self
            .pair
            .sign(&SystemRandom::new(), bundle_json)
            .expect("signing with a valid key works");
        let doc = serde_json::json!({
            "mediaType": SIGSTORE_BUNDLE_V03,
            "verificationMaterial": {"publicKey": {"hint": self.public_key().hint()}},
            "messageSignature": {
                "messageDigest": {"algorithm": "SHA2_256", "digest": b64(&Sha256::digest(bundle_json))},
                "signature": b64(sig.as_ref()),
            },
        });
        let mut out = serde_json::to_vec_pretty(&doc).expect("JSON of strings");
        out.push(b'\n');
        out
    }
}

/// A public key that bundles are checked against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    /// The uncompressed point (65 bytes).
    point: Vec<u8>,
}

impl PublicKey {
    /// Reads a SubjectPublicKeyInfo PEM public key of P-256.
    pub fn from_pem(text: &str) -> Result<PublicKey, SignatureError> {
        if text.contains("PRIVATE KEY-----") {
            return Err(SignatureError::BadKey(
                "this is a private key; give the public key (the .pub file of `tele keygen`), and keep the private one with the vendor"
                    .into(),
            ));
        }
        let der = pem_decode(text, "PUBLIC KEY")?;
        match der.strip_prefix(&P256_SPKI_PREFIX[..]) {
            Some(point) if point.len() == 65 && point[0] == 4 => Ok(PublicKey {
                point: point.to_vec(),
            }),
            _ => Err(SignatureError::BadKey(
                "not an ECDSA P-256 public key (tele signs with P-256: `tele keygen` makes such keys)"
                    .into(),
            )),
        }
    }

    /// The SubjectPublicKeyInfo DER.
    pub fn spki_der(&self) -> Vec<u8> {
        [&P256_SPKI_PREFIX[..], &self.point].concat()
    }

    /// As PEM (`PUBLIC KEY`).
    pub fn to_pem(&self) -> String {
        pem_encode(&self.spki_der(), "PUBLIC KEY")
    }

    /// `SHA256:` and the hex sha256 of its SubjectPublicKeyInfo: what
    /// messages name it by.
    pub fn fingerprint(&self) -> String {
        format!("SHA256:{}", hex::encode(Sha256::digest(self.spki_der())))
    }

    /// The Sigstore public-key hint: the base64 sha256 of the SubjectPublicKeyInfo.
    fn hint(&self) -> String {
        b64(&Sha256::digest(self.spki_der()))
    }

    /// Checks the signature file `signature` (a Sigstore bundle) of
    /// `bundle_json` against this key.
    pub fn verify(&self, bundle_json: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
        let malformed = |m: &str| SignatureError::Malformed(m.to_string());
        if signature.len() as u64 > MAX_KEY_OR_SIGNATURE_BYTES {
            return Err(malformed("larger than 64 KiB"));
        }
        let doc: serde_json::Value =
            serde_json::from_slice(signature).map_err(|e| malformed(&format!("not JSON: {e}")))?;
        if doc["mediaType"] != SIGSTORE_BUNDLE_V03 {
            return Err(malformed(&format!(
                "its mediaType is not {SIGSTORE_BUNDLE_V03}"
            )));
        }
        let sig = &doc["messageSignature"];
        if sig["messageDigest"]["algorithm"] != "SHA2_256" {
            return Err(malformed("its message digest is not SHA2_256"));
        }
        let field = |v: &serde_json::Value, name: &str| -> Result<Vec<u8>, SignatureError> {
            let s = v
                .as_str()
                .ok_or_else(|| malformed(&format!("it has no {name}")))?;
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|_| malformed(&format!("its {name} is not base64")))
        };
        let digest = field(&sig["messageDigest"]["digest"], "message digest")?;
        let bytes = field(&sig["signature"], "signature")?;
        if digest != Sha256::digest(bundle_json).as_slice() {
            return Err(SignatureError::DigestMismatch);
        }
        signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, &self.point)
            .verify(bundle_json, &bytes)
            .map_err(|_| SignatureError::WrongKey {
                expected: self.fingerprint(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_holds_for_its_key_and_contents_only() {
        let key = SigningKey::generate();
        let public = key.public_key();
        let meta = br#"{"name":"shop","files":[]}"#;
        let sig = key.sign(meta);
        assert_eq!(public.verify(meta, &sig), Ok(()));
        // Other contents, another key, an altered signature: refused.
        assert_eq!(
            public.verify(br#"{"name":"shop","files":[1]}"#, &sig),
            Err(SignatureError::DigestMismatch)
        );
        let other = SigningKey::generate().public_key();
        assert!(matches!(
            other.verify(meta, &sig),
            Err(SignatureError::WrongKey { .. })
        ));
        let mut doc: serde_json::Value = serde_json::from_slice(&sig).unwrap();
        doc["messageSignature"]["signature"] = b64(&[0x30, 0x06, 2, 1, 1, 2, 1, 1]).into();
        let forged = serde_json::to_vec(&doc).unwrap();
        assert!(matches!(
            public.verify(meta, &forged),
            Err(SignatureError::WrongKey { .. })
        ));
        assert!(matches!(
            public.verify(meta, b"{"),
            Err(SignatureError::Malformed(_))
        ));
        // The file is a Sigstore bundle naming the key by its hint.
        let doc: serde_json::Value = serde_json::from_slice(&sig).unwrap();
        assert_eq!(doc["mediaType"], SIGSTORE_BUNDLE_V03);
        assert_eq!(
            doc["verificationMaterial"]["publicKey"]["hint"],
            public.hint()
        );
    }

    #[test]
    fn keys_go_to_pem_and_back_and_the_wrong_kind_is_named() {
        let key = SigningKey::generate();
        let again = SigningKey::from_pem(&key.to_pem()).unwrap();
        assert_eq!(again.public_key(), key.public_key());
        let public = PublicKey::from_pem(&key.public_key().to_pem()).unwrap();
        assert_eq!(public, key.public_key());
        assert!(public.fingerprint().starts_with("SHA256:"));
        let e = PublicKey::from_pem(&key.to_pem()).unwrap_err().to_string();
        assert!(e.contains("this is a private key"), "{e}");
        let e = SigningKey::from_pem(&public.to_pem())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("this is a public key"), "{e}");
        let e = PublicKey::from_pem("hello").unwrap_err().to_string();
        assert!(e.contains("no `-----BEGIN PUBLIC KEY-----` block"), "{e}");
    }

    #[test]
    fn openssl_checks_what_tele_signs() {
        if std::process::Command::new("openssl")
            .arg("version")
            .output()
            .is_err()
        {
            panic!("openssl is needed (apt-get install openssl)");
        }
        let t = tempfile::tempdir().unwrap();
        let key = SigningKey::generate();
        let meta = b"{\"name\":\"shop\"}\n";
        let doc: serde_json::Value = serde_json::from_slice(&key.sign(meta)).unwrap();
        let sig = base64::engine::general_purpose::STANDARD
            .decode(doc["messageSignature"]["signature"].as_str().unwrap())
            .unwrap();
        std::fs::write(t.path().join("bundle.json"), meta).unwrap();
        std::fs::write(t.path().join("bundle.sig"), sig).unwrap();
        std::fs::write(t.path().join("vendor.pub"), key.public_key().to_pem()).unwrap();
        let check = |file: &str| {
            std::process::Command::new("openssl")
                .args([
                    "dgst",
                    "-sha256",
                    "-verify",
                    "vendor.pub",
                    "-signature",
                    "bundle.sig",
                    file,
                ])
                .current_dir(t.path())
                .output()
                .unwrap()
        };
        let o = check("bundle.json");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "Verified OK");
        std::fs::write(t.path().join("other.json"), b"{\"name\":\"shoq\"}\n").unwrap();
        assert!(!check("other.json").status.success());
        // And OpenSSL reads the private key tele writes.
        std::fs::write(t.path().join("vendor.key"), key.to_pem()).unwrap();
        let o = std::process::Command::new("openssl")
            .args(["pkey", "-in", "vendor.key", "-pubout"])
            .current_dir(t.path())
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            key.public_key().to_pem()
        );
    }
}
