//! The sandbox's certification authority (its stand-in "qualified trust
//! service provider"): it issues certificates to people with their RNOKPP in
//! the subject, so sign-in can be tried with real cryptography. Production
//! trusts the accredited providers' CAs instead.

use esocial_identifiers::Rnokpp;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};

/// The key algorithms a person's certificate may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    EcdsaP256,
    Ed25519,
}

impl KeyAlgorithm {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "ecdsa-p256" | "p256" => Some(Self::EcdsaP256),
            "ed25519" => Some(Self::Ed25519),
            _ => None,
        }
    }

    fn rcgen(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            Self::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Self::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }
}

/// A certificate and its private key, PEM encoded.
#[derive(Debug, Clone)]
pub struct Issued {
    pub certificate_pem: String,
    pub certificate_der: Vec<u8>,
    /// PKCS#8 PEM.
    pub private_key_pem: String,
}

/// A CA certificate with its key.
#[derive(Debug)]
pub struct CertificateAuthority {
    certificate_pem: String,
    key: KeyPair,
}

fn random_serial() -> SerialNumber {
    let mut bytes = *uuid::Uuid::new_v4().as_bytes();
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

impl CertificateAuthority {
    /// A new self-signed CA (ECDSA P-256, ten years).
    pub fn create(name: &str) -> Result<Self, rcgen::Error> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut subject = DistinguishedName::new();
        subject.push(DnType::CommonName, name);
        subject.push(DnType::OrganizationName, "esocial sandbox");
        subject.push(DnType::CountryName, "UA");
        params.distinguished_name = subject;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.serial_number = Some(random_serial());
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(3650);
        let certificate = params.self_signed(&key)?;
        Ok(Self { certificate_pem: certificate.pem(), key })
    }

    /// A CA from its certificate and PKCS#8 key, both PEM.
    pub fn load(certificate_pem: &str, key_pem: &str) -> Result<Self, rcgen::Error> {
        Ok(Self { certificate_pem: certificate_pem.to_owned(), key: KeyPair::from_pem(key_pem)? })
    }

    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    pub fn private_key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// A person's certificate: subject `CN=<name>, serialNumber=TINUA-<rnokpp>,
    /// C=UA`, for digital signatures and non-repudiation, valid from
    /// `valid_from_days` (may be negative) for `valid_days`.
    pub fn issue_person(
        &self,
        rnokpp: &Rnokpp,
        full_name: &str,
        algorithm: KeyAlgorithm,
        valid_from_days: i64,
        valid_days: i64,
    ) -> Result<Issued, rcgen::Error> {
        let key = KeyPair::generate_for(algorithm.rcgen())?;
        let mut params = CertificateParams::default();
        let mut subject = DistinguishedName::new();
        subject.push(DnType::CommonName, full_name);
        // serialNumber (2.5.4.5) with the ETSI semantics identifier.
        subject.push(DnType::CustomDnType(vec![2, 5, 4, 5]), format!("TINUA-{rnokpp}"));
        subject.push(DnType::CountryName, "UA");
        params.distinguished_name = subject;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::ContentCommitment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.serial_number = Some(random_serial());
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now + time::Duration::days(valid_from_days);
        params.not_after = params.not_before + time::Duration::days(valid_days);
        let issuer = Issuer::from_ca_cert_pem(&self.certificate_pem, &self.key)?;
        let certificate = params.signed_by(&key, &issuer)?;
        Ok(Issued {
            certificate_pem: certificate.pem(),
            certificate_der: certificate.der().to_vec(),
            private_key_pem: key.serialize_pem(),
        })
    }
}

/// Signs `message` with a PKCS#8 PEM private key, as a person's signing tool
/// would: ECDSA P-256 (DER signature) or Ed25519.
pub fn sign_with_pem_key(private_key_pem: &str, message: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
    use rcgen::SigningKey as _;
    KeyPair::from_pem(private_key_pem)?.sign(message)
}
