//! Checkpoints and tensor files (safetensors): `from_bytes`,
//! `tensors_from_bytes` and the set entries of the metadata: never a panic;
//! what loads round-trips through the writer (`to_bytes`,
//! `tensors_to_bytes`) to equal values, bit for bit.
#![no_main]

use dien_model::checkpoint::{TensorRef, from_bytes, set, tensors_from_bytes, tensors_to_bytes, to_bytes};
use libfuzzer_sys::fuzz_target;

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fuzz_target!(|data: &[u8]| {
    if let Ok((cfg, params)) = from_bytes(data) {
        let bytes = to_bytes(&cfg, &params).expect("a loaded checkpoint saves");
        let (cfg2, params2) = from_bytes(&bytes).expect("a saved checkpoint loads");
        assert_eq!(cfg2, cfg);
        assert_eq!(cfg2.alpha_aux.to_bits(), cfg.alpha_aux.to_bits());
        for ((s1, d1), (s2, d2)) in params.iter().zip(params2.iter()) {
            assert_eq!(s1, s2);
            assert_eq!(bits(d1), bits(d2), "{}", s1.name);
        }
    }
    if let Ok((meta, tensors)) = tensors_from_bytes(data) {
        for (k, v) in &meta {
            if k.starts_with(set::SET_KEY_PREFIX)
                && let Ok((name, _)) = set::parse_entry(v)
            {
                assert!(!name.is_empty() && !name.contains('/') && name != "..");
            }
        }
        let refs: Vec<TensorRef<'_>> =
            tensors.iter().map(|(n, s, d)| (n.as_str(), s.as_slice(), d.as_slice())).collect();
        let bytes = tensors_to_bytes(&refs, &meta).expect("loaded tensors save");
        let (meta2, tensors2) = tensors_from_bytes(&bytes).expect("saved tensors load");
        assert_eq!(meta2, meta);
        assert_eq!(tensors2.len(), tensors.len());
        for ((n1, s1, d1), (n2, s2, d2)) in tensors.iter().zip(&tensors2) {
            assert_eq!((n1, s1), (n2, s2));
            assert_eq!(bits(d1), bits(d2), "{n1}");
        }
    }
});
