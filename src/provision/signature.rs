//! Detached ed25519 signatures over the manifest's exact bytes (`<manifest>.sig`).
//!
//! Keys are 32-byte ed25519 public keys written as 64 hex characters; a signature file holds the
//! 64 raw signature bytes (as `openssl pkeyutl -sign -rawin` writes them) or 128 hex characters.

use ring::signature::{UnparsedPublicKey, ED25519};

/// Checks `sig` over `manifest` against any of `trusted_keys`. With no trusted keys configured,
/// signatures are not required and `Ok(false)` says none was checked.
pub fn verify(manifest: &[u8], sig: Option<&[u8]>, trusted_keys: &[String]) -> Result<bool, String> {
    if trusted_keys.is_empty() {
        return Ok(false);
    }
    let sig = sig.ok_or("trusted keys are configured (provision.trusted_keys) but the manifest has no .sig file beside it")?;
    let sig = decode_signature(sig)?;
    let mut keys = Vec::with_capacity(trusted_keys.len());
    for key in trusted_keys {
        keys.push(decode_hex(key.trim()).filter(|k| k.len() == 32).ok_or_else(|| {
            format!("provision.trusted_keys: `{key}` is not an ed25519 public key (64 hex characters)")
        })?);
    }
    let valid = keys.iter().any(|k| UnparsedPublicKey::new(&ED25519, k).verify(manifest, &sig).is_ok());
    if valid {
        Ok(true)
    } else {
        Err("the signature does not verify against any trusted key: the manifest was altered or signed by \
             an untrusted key"
            .into())
    }
}

fn decode_signature(bytes: &[u8]) -> Result<Vec<u8>, String> {
    if bytes.len() == 64 {
        return Ok(bytes.to_vec());
    }
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| decode_hex(s.trim()))
        .filter(|b| b.len() == 64)
        .ok_or_else(|| "the .sig file is neither 64 raw bytes nor 128 hex characters".to_string())
}

pub fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    fn keypair(seed: u8) -> Ed25519KeyPair {
        Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap()
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn signed_manifest_verifies_raw_and_hex() {
        let kp = keypair(1);
        let key = hex(kp.public_key().as_ref());
        let sig = kp.sign(b"version = 1\n");
        assert_eq!(verify(b"version = 1\n", Some(sig.as_ref()), &[key.clone()]), Ok(true));
        let hex_sig = hex(sig.as_ref()) + "\n";
        assert_eq!(verify(b"version = 1\n", Some(hex_sig.as_bytes()), &[key]), Ok(true));
    }

    #[test]
    fn tampered_unsigned_and_untrusted_are_refused() {
        let kp = keypair(1);
        let key = hex(kp.public_key().as_ref());
        let sig = kp.sign(b"version = 1\n");
        assert!(verify(b"version = 2\n", Some(sig.as_ref()), &[key.clone()]).is_err());
        assert!(verify(b"version = 1\n", None, &[key]).unwrap_err().contains(".sig"));
        let other = hex(keypair(2).public_key().as_ref());
        assert!(verify(b"version = 1\n", Some(sig.as_ref()), &[other]).is_err());
    }

    #[test]
    fn no_trusted_keys_means_no_check() {
        assert_eq!(verify(b"x", None, &[]), Ok(false));
    }

    #[test]
    fn malformed_key_is_named() {
        let err = verify(b"x", Some(&[0u8; 64]), &["zz".into()]).unwrap_err();
        assert!(err.contains("`zz`"), "{err}");
    }
}
