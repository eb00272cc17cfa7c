//! Every media type tele reads or writes: manifests, indexes, configs, layers.

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Uncompressed OCI layer.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// gzip-compressed OCI layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Docker schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Every manifest and index type, in the order a registry should prefer them.
pub const ACCEPTED: [&str; 4] = [
    OCI_INDEX,
    DOCKER_MANIFEST_LIST,
    OCI_MANIFEST,
    DOCKER_MANIFEST,
];

/// True for an index or manifest list.
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// True for any manifest or index type in [`ACCEPTED`].
pub fn is_manifest_or_index(media_type: &str) -> bool {
    ACCEPTED.contains(&media_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_are_told_from_manifests() {
        assert!(is_index(OCI_INDEX) && is_index(DOCKER_MANIFEST_LIST));
        assert!(!is_index(OCI_MANIFEST) && !is_index(DOCKER_MANIFEST));
        assert!(ACCEPTED.iter().all(|t| is_manifest_or_index(t)));
        assert!(!is_manifest_or_index(OCI_CONFIG));
    }
}
