//! Qualified electronic signatures, as far as sign-in needs them: the
//! certificate chain up to a trusted certification authority, the person's
//! RNOKPP in the certificate, and the signature over the login challenge.
//!
//! Signature algorithms are behind [`SignatureVerifier`]: ECDSA P-256 and
//! Ed25519 are implemented; a DSTU 4145 verifier (the Ukrainian standard
//! used by accredited providers) can be added to [`SignatureVerifiers`]
//! without touching the rest.

use chrono::{DateTime, TimeZone as _, Utc};
use esocial_identifiers::Rnokpp;
use sha2::{Digest as _, Sha256};
use x509_parser::prelude::{FromDer as _, X509Certificate};

/// The certificates sign-in trusts as roots (the qualified trust service
/// providers; in the sandbox, its own test CA).
#[derive(Debug, Clone, Default)]
pub struct TrustedIssuers {
    roots: Vec<Vec<u8>>,
}

impl TrustedIssuers {
    /// Every certificate in a PEM bundle. Fails on anything that is not a
    /// certificate, or on a certificate that is not a CA.
    pub fn from_pem(bundle: &str) -> Result<Self, String> {
        let mut roots = Vec::new();
        for block in pem::parse_many(bundle).map_err(|error| format!("not PEM: {error}"))? {
            if block.tag() != "CERTIFICATE" {
                return Err(format!("unexpected PEM block {:?}", block.tag()));
            }
            let der = block.into_contents();
            let (_, certificate) =
                X509Certificate::from_der(&der).map_err(|error| format!("not a certificate: {error}"))?;
            if !is_ca(&certificate) {
                return Err(format!("{} is not a certification authority", certificate.subject()));
            }
            roots.push(der);
        }
        if roots.is_empty() {
            return Err("no certificates in the trusted CA bundle".to_owned());
        }
        Ok(Self { roots })
    }

    pub fn len(&self) -> usize {
        self.roots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }
}

fn is_ca(certificate: &X509Certificate<'_>) -> bool {
    let constraints = matches!(certificate.basic_constraints(), Ok(Some(extension)) if extension.value.ca);
    let signs_certificates = matches!(certificate.key_usage(), Ok(Some(extension)) if extension.value.key_cert_sign());
    constraints && signs_certificates
}

/// Whether a CA may issue a path with `intermediates_below` CA certificates
/// between it and the person's certificate (its `pathLenConstraint`).
fn path_length_allows(issuer: &X509Certificate<'_>, intermediates_below: usize) -> bool {
    match issuer.basic_constraints() {
        Ok(Some(extension)) => extension
            .value
            .path_len_constraint
            .is_none_or(|length| usize::try_from(length).is_ok_and(|length| intermediates_below <= length)),
        Ok(None) => true,
        Err(_) => false,
    }
}

/// Whether a person's certificate is for signing and nothing a CA does: its
/// key usage has digitalSignature and neither keyCertSign nor cRLSign, and
/// its basic constraints (if any) do not make it a CA.
fn is_person_signing_certificate(certificate: &X509Certificate<'_>) -> bool {
    let usage_for_signing = matches!(
        certificate.key_usage(),
        Ok(Some(extension))
            if extension.value.digital_signature() && !extension.value.key_cert_sign() && !extension.value.crl_sign()
    );
    let not_a_ca = match certificate.basic_constraints() {
        Ok(Some(extension)) => !extension.value.ca,
        Ok(None) => true,
        Err(_) => false,
    };
    usage_for_signing && not_a_ca
}

/// What is wrong with a presented certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateProblem {
    #[error("the certificate chain is empty or not DER certificates")]
    Malformed,
    #[error("the certificate is not issued by a trusted qualified trust service provider")]
    UntrustedIssuer,
    #[error("the certificate is not valid at this time (from {not_before} to {not_after})")]
    OutsideValidity { not_before: DateTime<Utc>, not_after: DateTime<Utc> },
    #[error("the certificate's key is not for digital signatures")]
    NotForSigning,
    #[error("the certificate's subject carries no valid RNOKPP (serialNumber TINUA-…)")]
    NoRnokpp,
}

/// The public key of a certificate, as signature verifiers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// The SubjectPublicKeyInfo algorithm OID (dotted).
    pub algorithm: String,
    /// The curve OID for EC keys.
    pub curve: Option<String>,
    pub bytes: Vec<u8>,
}

/// A person's certificate that chains to a trusted root and is valid now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCertificate {
    pub der: Vec<u8>,
    /// Hex SHA-256 of the DER.
    pub fingerprint: String,
    pub subject: String,
    pub issuer: String,
    pub serial_number: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub rnokpp: Rnokpp,
    pub public_key: PublicKey,
}

/// Hex SHA-256 of DER bytes.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der).iter().map(|byte| format!("{byte:02x}")).collect()
}

fn timestamp(time: x509_parser::time::ASN1Time) -> DateTime<Utc> {
    Utc.timestamp_opt(time.timestamp(), 0).single().unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// One whole DER certificate, nothing after it.
fn parse_certificate(der: &[u8]) -> Result<X509Certificate<'_>, CertificateProblem> {
    match X509Certificate::from_der(der) {
        Ok(([], certificate)) => Ok(certificate),
        _ => Err(CertificateProblem::Malformed),
    }
}

/// Intermediates accepted between a person's certificate and a root.
const CHAIN_DEPTH_MAX: usize = 4;
/// Certificates larger than this are refused before parsing.
pub const CERTIFICATE_BYTES_MAX: usize = 16 * 1024;

/// Checks `chain` (the person's certificate first, then intermediates) at
/// time `at`: every link signed by the next, every issuer a CA whose path
/// length constraint allows the intermediates below it, ending in a trusted
/// root, all valid at `at`; the person's certificate not a CA and its key
/// usable for signatures; the RNOKPP present and valid.
pub fn verify_chain(
    chain: &[Vec<u8>],
    trusted: &TrustedIssuers,
    at: DateTime<Utc>,
) -> Result<VerifiedCertificate, CertificateProblem> {
    let (leaf_der, intermediates) = chain.split_first().ok_or(CertificateProblem::Malformed)?;
    if chain.len() > CHAIN_DEPTH_MAX + 1 || chain.iter().any(|der| der.len() > CERTIFICATE_BYTES_MAX) {
        return Err(CertificateProblem::Malformed);
    }
    let leaf = parse_certificate(leaf_der)?;
    let intermediates = intermediates.iter().map(|der| parse_certificate(der)).collect::<Result<Vec<_>, _>>()?;
    let roots = trusted.roots.iter().map(|der| parse_certificate(der)).collect::<Result<Vec<_>, _>>()?;
    let moment =
        x509_parser::time::ASN1Time::from_timestamp(at.timestamp()).map_err(|_| CertificateProblem::Malformed)?;

    // Walk up: the current certificate's issuer must be a trusted root, or an
    // intermediate that signed it and is itself a valid CA.
    let mut current = &leaf;
    let mut steps = 0;
    loop {
        let signed_by = |issuer: &X509Certificate<'_>| {
            issuer.subject().as_raw() == current.issuer().as_raw()
                && current.verify_signature(Some(issuer.public_key())).is_ok()
        };
        if let Some(root) = roots.iter().find(|root| signed_by(root)) {
            if !root.validity().is_valid_at(moment) || !path_length_allows(root, steps) {
                return Err(CertificateProblem::UntrustedIssuer);
            }
            break;
        }
        let next = intermediates.iter().find(|candidate| {
            signed_by(candidate)
                && is_ca(candidate)
                && candidate.validity().is_valid_at(moment)
                && path_length_allows(candidate, steps)
        });
        match next {
            Some(intermediate) if steps < CHAIN_DEPTH_MAX => {
                current = intermediate;
                steps += 1;
            }
            _ => return Err(CertificateProblem::UntrustedIssuer),
        }
    }

    let validity = leaf.validity();
    if !validity.is_valid_at(moment) {
        return Err(CertificateProblem::OutsideValidity {
            not_before: timestamp(validity.not_before),
            not_after: timestamp(validity.not_after),
        });
    }
    if !is_person_signing_certificate(&leaf) {
        return Err(CertificateProblem::NotForSigning);
    }
    let rnokpp = rnokpp_of(&leaf).ok_or(CertificateProblem::NoRnokpp)?;
    let spki = leaf.public_key();
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|parameters| parameters.as_oid().ok())
        .map(|oid| oid.to_id_string());
    Ok(VerifiedCertificate {
        fingerprint: fingerprint(leaf_der),
        subject: leaf.subject().to_string(),
        issuer: leaf.issuer().to_string(),
        serial_number: leaf.raw_serial_as_string(),
        not_before: timestamp(validity.not_before),
        not_after: timestamp(validity.not_after),
        rnokpp,
        public_key: PublicKey {
            algorithm: spki.algorithm.algorithm.to_id_string(),
            curve,
            bytes: spki.subject_public_key.data.to_vec(),
        },
        der: leaf_der.clone(),
    })
}

/// The RNOKPP in the subject's serialNumber, written `TINUA-<rnokpp>` (the
/// ETSI EN 319 412-1 form for a national tax identification number).
fn rnokpp_of(certificate: &X509Certificate<'_>) -> Option<Rnokpp> {
    certificate
        .subject()
        .iter_by_oid(&x509_parser::oid_registry::OID_X509_SERIALNUMBER)
        .filter_map(|attribute| attribute.as_str().ok())
        .find_map(|value| value.strip_prefix("TINUA-").and_then(|number| number.parse().ok()))
}

/// Checks signatures made with one kind of key.
pub trait SignatureVerifier: Send + Sync + std::fmt::Debug {
    /// Whether keys like this one are this verifier's.
    fn handles(&self, key: &PublicKey) -> bool;
    /// Whether `signature` is `key`'s signature of `message`.
    fn verify(&self, key: &PublicKey, message: &[u8], signature: &[u8]) -> bool;
}

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_ED25519: &str = "1.3.101.112";

/// ECDSA on P-256 with SHA-256, the signature ASN.1 DER encoded.
#[derive(Debug, Clone, Copy, Default)]
pub struct EcdsaP256;

impl SignatureVerifier for EcdsaP256 {
    fn handles(&self, key: &PublicKey) -> bool {
        key.algorithm == OID_EC_PUBLIC_KEY && key.curve.as_deref() == Some(OID_P256)
    }

    fn verify(&self, key: &PublicKey, message: &[u8], signature: &[u8]) -> bool {
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, &key.bytes)
            .verify(message, signature)
            .is_ok()
    }
}

/// Ed25519 (RFC 8032).
#[derive(Debug, Clone, Copy, Default)]
pub struct Ed25519;

impl SignatureVerifier for Ed25519 {
    fn handles(&self, key: &PublicKey) -> bool {
        key.algorithm == OID_ED25519
    }

    fn verify(&self, key: &PublicKey, message: &[u8], signature: &[u8]) -> bool {
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &key.bytes)
            .verify(message, signature)
            .is_ok()
    }
}

/// The signature algorithms sign-in accepts.
#[derive(Debug)]
pub struct SignatureVerifiers(Vec<Box<dyn SignatureVerifier>>);

impl Default for SignatureVerifiers {
    fn default() -> Self {
        Self(vec![Box::new(EcdsaP256), Box::new(Ed25519)])
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureProblem {
    #[error("the certificate's key algorithm is not supported")]
    UnsupportedKey,
    #[error("the signature does not match the certificate's key")]
    Invalid,
}

impl SignatureVerifiers {
    pub fn with(verifiers: Vec<Box<dyn SignatureVerifier>>) -> Self {
        Self(verifiers)
    }

    pub fn verify(&self, key: &PublicKey, message: &[u8], signature: &[u8]) -> Result<(), SignatureProblem> {
        let verifier = self.0.iter().find(|verifier| verifier.handles(key)).ok_or(SignatureProblem::UnsupportedKey)?;
        if verifier.verify(key, message, signature) { Ok(()) } else { Err(SignatureProblem::Invalid) }
    }
}

/// The bytes a person signs to sign in.
pub fn login_message(challenge_id: &uuid::Uuid, nonce: &[u8]) -> Vec<u8> {
    let mut message = format!("esocial-login:{challenge_id}:").into_bytes();
    message.extend_from_slice(nonce);
    message
}

#[cfg(test)]
mod tests {
    use esocial_identifiers::Sex;
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };

    use super::*;

    /// A CA made for a test: its parameters and key issue certificates.
    struct Authority {
        params: CertificateParams,
        key: KeyPair,
        der: Vec<u8>,
    }

    fn validity(params: &mut CertificateParams) {
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(30);
    }

    fn ca_params(name: &str, path_length: Option<u8>) -> CertificateParams {
        let mut params = CertificateParams::default();
        let mut subject = DistinguishedName::new();
        subject.push(DnType::CommonName, name);
        params.distinguished_name = subject;
        params.is_ca = IsCa::Ca(path_length.map_or(BasicConstraints::Unconstrained, BasicConstraints::Constrained));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut params);
        params
    }

    fn root(path_length: Option<u8>) -> Authority {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let params = ca_params("test root", path_length);
        let der = params.self_signed(&key).expect("root").der().to_vec();
        Authority { params, key, der }
    }

    fn intermediate(issuer: &Authority, name: &str, path_length: Option<u8>) -> Authority {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let params = ca_params(name, path_length);
        let der = params.signed_by(&key, &Issuer::from_params(&issuer.params, &issuer.key)).expect("ca").der().to_vec();
        Authority { params, key, der }
    }

    /// A person's certificate as the sandbox CA issues it, changed by `adjust`.
    fn person(issuer: &Authority, adjust: impl FnOnce(&mut CertificateParams)) -> Vec<u8> {
        let rnokpp = Rnokpp::compose(chrono::NaiveDate::from_ymd_opt(1980, 1, 1).expect("date"), 17, Sex::Female)
            .expect("rnokpp");
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params = CertificateParams::default();
        let mut subject = DistinguishedName::new();
        subject.push(DnType::CommonName, "Тестова Особа");
        subject.push(DnType::CustomDnType(vec![2, 5, 4, 5]), format!("TINUA-{rnokpp}"));
        params.distinguished_name = subject;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::ContentCommitment];
        validity(&mut params);
        adjust(&mut params);
        params.signed_by(&key, &Issuer::from_params(&issuer.params, &issuer.key)).expect("person").der().to_vec()
    }

    fn trusting(root: &Authority) -> TrustedIssuers {
        TrustedIssuers { roots: vec![root.der.clone()] }
    }

    #[test]
    fn a_person_certificate_of_a_trusted_ca_verifies() {
        let root = root(Some(0));
        let verified = verify_chain(&[person(&root, |_| {})], &trusting(&root), Utc::now()).expect("verifies");
        assert_eq!(verified.rnokpp.as_str().len(), 10);
    }

    #[test]
    fn a_person_certificate_that_is_a_ca_or_signs_certificates_is_refused() {
        let root = root(None);
        let trusted = trusting(&root);
        let as_ca = person(&root, |params| {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        });
        assert_eq!(verify_chain(&[as_ca], &trusted, Utc::now()), Err(CertificateProblem::NotForSigning));
        let signs_certificates = person(&root, |params| {
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyCertSign];
        });
        assert_eq!(verify_chain(&[signs_certificates], &trusted, Utc::now()), Err(CertificateProblem::NotForSigning));
        let signs_revocation_lists = person(&root, |params| {
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::CrlSign];
        });
        assert_eq!(
            verify_chain(&[signs_revocation_lists], &trusted, Utc::now()),
            Err(CertificateProblem::NotForSigning)
        );
        let for_encryption = person(&root, |params| params.key_usages = vec![KeyUsagePurpose::KeyEncipherment]);
        assert_eq!(verify_chain(&[for_encryption], &trusted, Utc::now()), Err(CertificateProblem::NotForSigning));
        let no_key_usage = person(&root, |params| params.key_usages = Vec::new());
        assert_eq!(verify_chain(&[no_key_usage], &trusted, Utc::now()), Err(CertificateProblem::NotForSigning));
    }

    #[test]
    fn path_length_constraints_are_honoured() {
        // The root allows no intermediate: a person certificate issued by one is refused.
        let strict = root(Some(0));
        let below_strict = intermediate(&strict, "intermediate", None);
        let chain = [person(&below_strict, |_| {}), below_strict.der.clone()];
        assert_eq!(verify_chain(&chain, &trusting(&strict), Utc::now()), Err(CertificateProblem::UntrustedIssuer));

        // One intermediate allowed: accepted.
        let one = root(Some(1));
        let below_one = intermediate(&one, "intermediate", Some(0));
        let chain = [person(&below_one, |_| {}), below_one.der.clone()];
        assert!(verify_chain(&chain, &trusting(&one), Utc::now()).is_ok());

        // An intermediate allowing none below it, with one below it: refused.
        let open = root(None);
        let upper = intermediate(&open, "upper", Some(0));
        let lower = intermediate(&upper, "lower", None);
        let chain = [person(&lower, |_| {}), lower.der, upper.der];
        assert_eq!(verify_chain(&chain, &trusting(&open), Utc::now()), Err(CertificateProblem::UntrustedIssuer));

        // The same path under constraints that allow it: accepted.
        let upper = intermediate(&open, "upper", Some(1));
        let lower = intermediate(&upper, "lower", Some(0));
        let chain = [person(&lower, |_| {}), lower.der, upper.der];
        assert!(verify_chain(&chain, &trusting(&open), Utc::now()).is_ok());
    }
}
