//! A byte buffer for secret-bearing data (a token form, an answer carrying a new secret
//! or a token, a delivery document) that leaves no copy behind in freed memory: it is
//! wiped when dropped, and when it has to grow it moves into a larger buffer and wipes
//! the old one (a plain `Vec` frees its old allocation as it is, secret included).
//!
//! What it cannot reach: copies the HTTP and TLS libraries make while sending or
//! receiving. The process is also non-dumpable and the unit has `LimitCORE=0`, so such
//! copies do not end up in a core file.

use zeroize::{Zeroize, Zeroizing};

pub struct SecretBuf(Zeroizing<Vec<u8>>);

impl SecretBuf {
    pub fn with_capacity(capacity: usize) -> SecretBuf {
        SecretBuf(Zeroizing::new(Vec::with_capacity(capacity)))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Appends `data`, moving to a buffer of at least twice the size (and wiping the old
    /// one) when it does not fit.
    pub fn extend(&mut self, data: &[u8]) {
        let needed = self.0.len() + data.len();
        if needed > self.0.capacity() {
            let mut larger = Vec::with_capacity(needed.max(self.0.capacity() * 2).max(256));
            larger.extend_from_slice(&self.0);
            // The old allocation is wiped (its whole capacity) as it is dropped here.
            let mut old = std::mem::replace(&mut *self.0, larger);
            old.zeroize();
        }
        self.0.extend_from_slice(data);
    }

    /// The buffer as text (an invalid byte becomes U+FFFD): valid UTF-8 is taken over
    /// without a copy.
    pub fn into_text(mut self) -> Zeroizing<String> {
        let bytes = std::mem::take(&mut *self.0);
        match String::from_utf8(bytes) {
            Ok(text) => Zeroizing::new(text),
            Err(error) => {
                let mut bytes = error.into_bytes();
                let text = String::from_utf8_lossy(&bytes).into_owned();
                bytes.zeroize();
                Zeroizing::new(text)
            }
        }
    }

    /// The buffer as a request body; wiped when the HTTP client drops it.
    pub fn into_body(mut self) -> reqwest::Body {
        let bytes = std::mem::take(&mut *self.0);
        reqwest::Body::from(bytes::Bytes::from_owner(Zeroizing::new(bytes)))
    }
}

impl std::io::Write for SecretBuf {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.extend(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `value` as JSON in a wiped buffer.
pub fn json(value: &impl serde::Serialize) -> Result<SecretBuf, serde_json::Error> {
    let mut buffer = SecretBuf::with_capacity(1024);
    serde_json::to_writer(&mut buffer, value)?;
    Ok(buffer)
}

/// `value` as indented JSON in a wiped buffer.
pub fn json_pretty(value: &impl serde::Serialize) -> Result<SecretBuf, serde_json::Error> {
    let mut buffer = SecretBuf::with_capacity(1024);
    serde_json::to_writer_pretty(&mut buffer, value)?;
    Ok(buffer)
}

/// An `application/x-www-form-urlencoded` body of `pairs`, in a wiped buffer.
pub fn form(pairs: &[(&str, &str)]) -> SecretBuf {
    let mut buffer = SecretBuf::with_capacity(1024);
    for (index, (name, value)) in pairs.iter().enumerate() {
        if index > 0 {
            buffer.extend(b"&");
        }
        for (position, part) in [name, value].into_iter().enumerate() {
            if position == 1 {
                buffer.extend(b"=");
            }
            for piece in url::form_urlencoded::byte_serialize(part.as_bytes()) {
                buffer.extend(piece.as_bytes());
            }
        }
    }
    buffer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growing_keeps_every_byte_in_order() {
        let mut buffer = SecretBuf::with_capacity(1);
        let mut expected = Vec::new();
        for round in 0..2000u32 {
            let piece = round.to_string();
            buffer.extend(piece.as_bytes());
            expected.extend_from_slice(piece.as_bytes());
        }
        assert_eq!(buffer.as_bytes(), expected.as_slice());
        assert_eq!(buffer.len(), expected.len());
    }

    #[test]
    fn a_form_is_encoded_like_reqwests() {
        let pairs = [
            ("client_id", "6b6c…"),
            ("scope", "https://graph.microsoft.com/.default"),
            ("client_secret", "a+b/c=d&e f~_.-"),
        ];
        let ours = form(&pairs).into_text();
        let theirs = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        assert_eq!(ours.as_str(), theirs);
        assert!(ours.contains("client_secret=a%2Bb%2Fc%3Dd%26e+f%7E_.-"));
    }

    #[test]
    fn text_takes_invalid_bytes_as_replacement_characters() {
        let mut buffer = SecretBuf::with_capacity(4);
        buffer.extend(b"ok \xff");
        assert_eq!(buffer.into_text().as_str(), "ok \u{fffd}");
    }
}
