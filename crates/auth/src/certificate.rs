//! What a client certificate says about its holder.

/// The subject of the DER certificate `der` in RFC 2253 form (last RDN
/// first, `CN=a,O=b`); `None` when it is not a certificate.
pub fn subject(der: &[u8]) -> Option<String> {
    use x509_cert::der::Decode;
    let parsed = x509_cert::Certificate::from_der(der).ok()?;
    Some(parsed.tbs_certificate.subject.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subject_of_a_certificate_and_nothing_from_junk() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::OrganizationName, "Example");
        dn.push(rcgen::DnType::CommonName, "alice");
        params.distinguished_name = dn;
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(subject(cert.der()).as_deref(), Some("CN=alice,O=Example"));
        assert_eq!(subject(b""), None);
        assert_eq!(subject(&cert.der()[..cert.der().len() / 2]), None);
    }
}
