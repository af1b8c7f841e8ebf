//! Tests of batches: building, limits, JSON and arrays.

use super::*;

#[test]
fn keep_recent_keeps_the_latest_behaviours_and_sizes_are_bounded() {
    let h: Vec<Vec<u32>> = vec![vec![1, 2, 3, 4, 5], vec![7], vec![]];
    let mut b = Batch::from_samples(
        vec![0, 1, 2],
        vec![1, 1, 1],
        vec![0, 0, 0],
        &h,
        &h,
        Some(&h),
        Some(&h),
        vec![1.0, 0.0, 1.0],
    )
    .unwrap();
    b.keep_recent(3);
    assert_eq!((b.steps, b.lengths.clone()), (3, vec![3, 1, 0]));
    assert_eq!(b.hist_mid, [3, 4, 5, 7, 0, 0, 0, 0, 0]);
    assert_eq!(b.neg_cat.as_deref(), Some(&[3, 4, 5, 7, 0, 0, 0, 0, 0][..]));
    let before = b.clone();
    b.keep_recent(10);
    assert_eq!(b, before);

    let many = vec![Vec::new(); MAX_SAMPLES + 1];
    let ids = vec![0; MAX_SAMPLES + 1];
    let labels = vec![0.0; MAX_SAMPLES + 1];
    let err = Batch::from_samples(ids.clone(), ids.clone(), ids, &many, &many, None, None, labels).unwrap_err();
    assert!(err.to_string().contains("at most"), "{err}");
}

#[test]
fn json_round_and_errors() {
    let j = r#"{"uid":[1,2],"mid":[3,4],"cat":[1,1],"hist_mid":[[5,6,7],[]],"hist_cat":[[1,2,1],[]],
               "neg_mid":[[8,9,1],[]],"neg_cat":[[2,2,2],[]],"label":[1,0],"extra":true}"#;
    let b = Batch::from_json_str(j).unwrap();
    assert_eq!((b.batch, b.steps), (2, 3));
    assert_eq!(b.lengths, vec![3, 0]);
    assert_eq!(b.hist_mid, vec![5, 6, 7, 0, 0, 0]);
    assert!(b.validate(3, 10, 3).is_ok());
    let e = b.validate(3, 9, 3).unwrap_err().to_string();
    assert!(e.contains("neg_mid") && e.contains("sample 0, step 1"), "{e}");
    let bad = r#"{"uid":[1],"mid":[3],"cat":[1],"hist_mid":[[5,6]],"hist_cat":[[1]],"label":[1]}"#;
    let e = Batch::from_json_str(bad).unwrap_err().to_string();
    assert!(e.contains("hist_cat"), "{e}");
    let bad = r#"{"uid":[1],"mid":[3],"cat":[1],"hist_mid":[[]],"hist_cat":[[]],"label":[0.5]}"#;
    assert!(Batch::from_json_str(bad).unwrap_err().to_string().contains("label"));
}

/// `uid`, `mid`, `cat`, `hist_mid`, `hist_cat`, `lengths`.
type Case = (Vec<i64>, Vec<i64>, Vec<i64>, ndarray::Array2<i64>, ndarray::Array2<i64>, Vec<i64>);

/// The JSON batch of `json_round_and_errors` as arrays, with −1 as padding.
fn arrays_case() -> Case {
    let hist_mid = ndarray::array![[5, 6, 7], [-1, -1, -1]];
    let hist_cat = ndarray::array![[1, 2, 1], [-1, -1, -1]];
    (vec![1, 2], vec![3, 4], vec![1, 1], hist_mid, hist_cat, vec![3, 0])
}

#[test]
fn arrays_equal_json_and_padding_is_not_read() {
    use ndarray::{ArrayView1, array};
    let (uid, mid, cat, hm, hc, len) = arrays_case();
    let (nm, nc) = (array![[8i64, 9, 1], [7, 7, 7]], array![[2i64, 2, 2], [-5, -5, -5]]);
    let label = [1.0f32, 0.0];
    let v = |x: &[i64]| ArrayView1::from(x).to_owned();
    let b = Batch::from_arrays(
        v(&uid).view(),
        v(&mid).view(),
        v(&cat).view(),
        hm.view(),
        hc.view(),
        v(&len).view(),
        ArrayView1::from(&label),
        Some(nm.view()),
        Some(nc.view()),
    )
    .unwrap();
    let j = r#"{"uid":[1,2],"mid":[3,4],"cat":[1,1],"hist_mid":[[5,6,7],[]],"hist_cat":[[1,2,1],[]],
               "neg_mid":[[8,9,1],[]],"neg_cat":[[2,2,2],[]],"label":[1,0]}"#;
    assert_eq!(b, Batch::from_json_str(j).unwrap());
    // Any integer type, any memory layout (a transposed view is read as such).
    let t: ndarray::Array2<u32> = array![[5, 0], [6, 0], [7, 0]];
    let c: ndarray::Array2<u32> = array![[1, 0], [2, 0], [1, 0]];
    let b32 = Batch::from_arrays(
        array![1u32, 2].view(),
        array![3u32, 4].view(),
        array![1u32, 1].view(),
        t.t(),
        c.t(),
        array![3u32, 0].view(),
        ArrayView1::from(&label),
        None,
        None,
    )
    .unwrap();
    assert_eq!(b32.hist_mid, b.hist_mid);
    assert!(!b32.has_negatives());
}

/// The same mistake made in JSON and in arrays gets the same message.
#[test]
fn arrays_and_json_share_their_messages() {
    use ndarray::{ArrayView1, array};
    let (uid, mid, cat, hm, hc, len) = arrays_case();
    let label = [1.0f32, 0.0];
    let run = |uid: &[i64],
               mid: &[i64],
               hm: ndarray::ArrayView2<'_, i64>,
               hc: ndarray::ArrayView2<'_, i64>,
               label: &[f32],
               neg: Option<ndarray::ArrayView2<'_, i64>>| {
        Batch::from_arrays(
            ArrayView1::from(uid),
            ArrayView1::from(mid),
            ArrayView1::from(&cat[..]),
            hm,
            hc,
            ArrayView1::from(&len[..]),
            ArrayView1::from(label),
            neg,
            None,
        )
        .unwrap_err()
        .to_string()
    };
    let json = |text: &str| Batch::from_json_str(text).unwrap_err().to_string();
    // A missing sample.
    assert_eq!(
        run(&uid, &mid[..1], hm.view(), hc.view(), &label, None),
        json(r#"{"uid":[1,2],"mid":[3],"cat":[1,1],"hist_mid":[[5,6,7],[]],"hist_cat":[[1,2,1],[]],"label":[1,0]}"#)
    );
    // A label that is not 0 or 1.
    assert_eq!(
        run(&uid, &mid, hm.view(), hc.view(), &[1.0, 0.5], None),
        json(
            r#"{"uid":[1,2],"mid":[3,4],"cat":[1,1],"hist_mid":[[5,6,7],[]],"hist_cat":[[1,2,1],[]],"label":[1,0.5]}"#
        )
    );
    // Negatives without their categories.
    let e = run(&uid, &mid, hm.view(), hc.view(), &label, Some(hm.view()));
    assert_eq!(e, "batch: `neg_mid` and `neg_cat` must be given together");
    // A negative index.
    let e = run(&[1, -4], &mid, hm.view(), hc.view(), &label, None);
    assert_eq!(
        e,
        json(r#"{"uid":[1,-4],"mid":[3,4],"cat":[1,1],"hist_mid":[[5,6,7],[]],"hist_cat":[[1,2,1],[]],"label":[1,0]}"#)
    );
    assert!(e.contains("sample 1: `uid` value -4 is not an index"), "{e}");
    let bad_hist = array![[5i64, -6, 7], [0, 0, 0]];
    let e = run(&uid, &mid, bad_hist.view(), hc.view(), &label, None);
    assert_eq!(
        e,
        json(r#"{"uid":[1,2],"mid":[3,4],"cat":[1,1],"hist_mid":[[5,-6,7],[]],"hist_cat":[[1,2,1],[]],"label":[1,0]}"#)
    );
    // Histories of different widths.
    let narrow = array![[1i64, 2], [0, 0]];
    assert_eq!(
        run(&uid, &mid, hm.view(), narrow.view(), &label, None),
        json(r#"{"uid":[1,2],"mid":[3,4],"cat":[1,1],"hist_mid":[[5,6,7],[]],"hist_cat":[[1,2],[]],"label":[1,0]}"#)
    );
    // A length beyond T: the message of `validate`.
    let e = Batch::from_arrays(
        ArrayView1::from(&uid[..]),
        ArrayView1::from(&mid[..]),
        ArrayView1::from(&cat[..]),
        hm.view(),
        hc.view(),
        array![4i64, 0].view(),
        ArrayView1::from(&label),
        None,
        None,
    )
    .unwrap_err()
    .to_string();
    assert_eq!(e, "batch: sample 0: length 4 exceeds T = 3");
}
