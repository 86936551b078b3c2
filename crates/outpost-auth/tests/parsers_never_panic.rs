//! Fuzz-style checks without extra dependencies: thousands of pseudo-random and mutated inputs go through
//! every parser of the crate, which must return instead of panicking, and whatever parses must survive
//! its round trip.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use outpost_auth::{
    ConnectionString, DeviceConnectionString, EventHubConnectionString, KeyEncoding, Rights, SasToken,
    ServiceConnectionString, SymmetricKey, Thumbprint, resource_in_scope,
};

const ROUNDS: usize = 4000;

const SEEDS: [&str; 5] = [
    "SharedAccessSignature sr=localhost%2Fdevices%2Fdev1&sig=bJyRDFcZSwu8KRkFnTPlWGHeXmibTY0%2FCA8i704rkuE%3D&se=1795692685",
    "SharedAccessSignature sr=localhost&sig=EAynS8D3YFHf81iMKWhzvzLF/ZHAnmPBNKeS7KNMXLY%3D&se=1795692689&skn=iothubowner",
    "HostName=h;DeviceId=dev1;ModuleId=m;SharedAccessKey=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=;GatewayHostName=g",
    "HostName=h;SharedAccessKeyName=iothubowner;SharedAccessKey=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    "Endpoint=sb://h/;SharedAccessKeyName=s;SharedAccessKey=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=;EntityPath=e;UseDevelopmentEmulator=true",
];

/// Bytes the parsers split on or decode, to reach past the first check more often than uniform bytes.
const ALPHABET: &[u8] = b"sr=sig=se=skn=&;%2F%3D=+/AZaz09 :HostName=DeviceId=x509=true\xff\xc3";

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn random_bytes(&mut self) -> Vec<u8> {
        let len = self.below(300);
        (0..len).map(|_| self.next() as u8).collect()
    }

    fn alphabet_bytes(&mut self) -> Vec<u8> {
        let len = self.below(200);
        (0..len).map(|_| ALPHABET[self.below(ALPHABET.len())]).collect()
    }

    fn mutated_seed(&mut self) -> Vec<u8> {
        let mut bytes = SEEDS[self.below(SEEDS.len())].as_bytes().to_vec();
        for _ in 0..=self.below(4) {
            let at = self.below(bytes.len() + 1);
            match self.below(4) {
                0 if at < bytes.len() => bytes[at] = self.next() as u8,
                1 if at < bytes.len() => {
                    bytes.remove(at);
                }
                2 => bytes.insert(at, ALPHABET[self.below(ALPHABET.len())]),
                _ => bytes.truncate(at),
            }
        }
        bytes
    }
}

fn exercise(input: &str, key: &SymmetricKey) {
    if let Ok(token) = SasToken::parse(input) {
        for encoding in [KeyEncoding::Base64Decoded, KeyEncoding::RawString] {
            let _ = token.verify(key, encoding, 1_795_690_000);
        }
        let _ = resource_in_scope(token.resource(), input);
        let _ = resource_in_scope(input, token.resource());
        let _ = format!("{token:?}");
    }
    let _ = ConnectionString::parse(input);
    if let Ok(service) = ServiceConnectionString::parse(input) {
        assert_eq!(
            ServiceConnectionString::parse(&service.to_string()).expect("display output parses back"),
            service
        );
    }
    if let Ok(device) = DeviceConnectionString::parse(input) {
        assert_eq!(
            DeviceConnectionString::parse(&device.to_string()).expect("display output parses back"),
            device
        );
    }
    if let Ok(event_hub) = EventHubConnectionString::parse(input) {
        assert_eq!(
            EventHubConnectionString::parse(&event_hub.to_string()).expect("display output parses back"),
            event_hub
        );
        let _ = event_hub.host();
    }
    if let Ok(rights) = Rights::parse(input) {
        assert_eq!(
            Rights::parse(&rights.to_string()).expect("display output parses back"),
            rights
        );
    }
    let _ = Thumbprint::parse(input);
    let _ = SymmetricKey::try_new(input);
}

#[test]
fn random_and_mutated_inputs_never_panic() {
    let key = SymmetricKey::try_new("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for round in 0..ROUNDS {
        for bytes in [rng.random_bytes(), rng.alphabet_bytes(), rng.mutated_seed()] {
            let input = String::from_utf8_lossy(&bytes);
            exercise(&input, &key);
        }
        if round % 1000 == 0 {
            exercise(&"&sr=".repeat(round + 1), &key);
        }
    }
}

#[test]
fn mutated_tokens_that_still_parse_mostly_fail_verification() {
    let key = SymmetricKey::try_new("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
    let original = SasToken::parse(SEEDS[0]).unwrap();
    let mut rng = XorShift(42);
    for _ in 0..ROUNDS {
        let bytes = rng.mutated_seed();
        let Ok(token) = SasToken::parse(&String::from_utf8_lossy(&bytes)) else {
            continue;
        };
        if token
            .verify(&key, KeyEncoding::Base64Decoded, 1_795_690_000)
            .is_ok()
        {
            // Only mutations that leave the signed bytes alone (the prefix, padding, an ignored field) verify.
            assert_eq!(token.resource_raw(), original.resource_raw());
            assert_eq!(token.expiry(), original.expiry());
            assert_eq!(token.signature(), original.signature());
        }
    }
}
