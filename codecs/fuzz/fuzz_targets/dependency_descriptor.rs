//! Feeds arbitrary bytes to the dependency_descriptor parser; only a panic or an out-of-bounds read fails.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use weir_codecs::av1::dependency_descriptor::rewrite_active_decode_targets;
    use weir_codecs::DependencyDescriptor;
    // Two descriptors in one input, so later ones can refer to an earlier structure.
    let split = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let (a, b) = data.split_at(split);
    let mut cache = None;
    let _ = DependencyDescriptor::parse_with_cache(a, &mut cache);
    if let Ok(d) = DependencyDescriptor::parse_with_cache(b, &mut cache) {
        let mut out = [0u8; 2048];
        if let Some(s) = cache.as_ref() {
            let _ = d.write(s, &mut out);
        }
    }
    let mut out = [0u8; 2048];
    let _ = rewrite_active_decode_targets(b, cache.as_ref(), 1, &mut out);
});
