//! The grid of a sweep: the models, the seeds and the values of each swept
//! setting as the command line spells them, and the cells (one model with
//! one value of every swept setting) they make.

use std::collections::BTreeSet;

use dien_model::ModelKind;

use crate::error::TrainError;

/// The most seeds a sweep takes: far more than an honest comparison needs,
/// and a slip such as `--seeds 1-100000` is refused instead of started.
pub const MAX_SEEDS: usize = 1000;

fn bad(flag: &str, msg: String) -> TrainError {
    TrainError::Config(format!("{flag}: {msg}"))
}

/// `--seeds`: comma-separated seeds and inclusive ranges (`1-5`, `1,2,7`,
/// `1-3,10`), in the order given; a seed given twice is an error.
pub fn parse_seeds(text: &str) -> Result<Vec<u64>, TrainError> {
    let flag = format!("--seeds {text}");
    let number =
        |s: &str| s.trim().parse::<u64>().map_err(|e| bad(&flag, format!("`{s}` is not a seed (a whole number): {e}")));
    let mut seeds = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        if part.is_empty() {
            return Err(bad(&flag, "an empty entry (write seeds as `1-5` or `1,2,7`)".into()));
        }
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => (number(part)?, number(part)?),
        };
        if lo > hi {
            return Err(bad(&flag, format!("the range {part} is empty ({lo} > {hi}); write it as {hi}-{lo}")));
        }
        if hi - lo >= MAX_SEEDS as u64 || seeds.len() + (hi - lo) as usize >= MAX_SEEDS {
            return Err(bad(&flag, format!("more than {MAX_SEEDS} seeds")));
        }
        seeds.extend(lo..=hi);
    }
    let mut seen = BTreeSet::new();
    if let Some(dup) = seeds.iter().find(|s| !seen.insert(**s)) {
        return Err(bad(&flag, format!("seed {dup} is given twice")));
    }
    Ok(seeds)
}

/// `--models`: a comma-separated list of model names, each once.
pub fn parse_models(text: &str) -> Result<Vec<ModelKind>, TrainError> {
    let flag = format!("--models {text}");
    let mut models = Vec::new();
    for name in text.split(',').map(str::trim) {
        let m: ModelKind = name.parse().map_err(|_| {
            let names: Vec<&str> = ModelKind::ALL.iter().map(|m| m.name()).collect();
            let what = if name.is_empty() { "an empty name".to_string() } else { format!("unknown model `{name}`") };
            bad(&flag, format!("{what} (the models: {})", names.join(", ")))
        })?;
        if models.contains(&m) {
            return Err(bad(&flag, format!("`{m}` is given twice")));
        }
        models.push(m);
    }
    Ok(models)
}

/// One `--set KEY=V1,V2,...`: a setting of `dien train` by its flag name
/// with underscores, and the values it takes in turn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    /// The setting (`lr`, `alpha_aux`, ...).
    pub key: String,
    /// Its values as written, in order.
    pub values: Vec<String>,
}

/// Parses `KEY=V1,V2,...` (the key is checked by the caller, which knows
/// the settings of `dien train`).
pub fn parse_set(text: &str) -> Result<Setting, TrainError> {
    let flag = format!("--set {text}");
    let (key, values) =
        text.split_once('=').ok_or_else(|| bad(&flag, "expected KEY=V1,V2,... (for example lr=0.001,0.003)".into()))?;
    let key = key.trim().replace('-', "_");
    if key.is_empty() {
        return Err(bad(&flag, "no key before `=`".into()));
    }
    let values: Vec<String> = values.split(',').map(|v| v.trim().to_string()).collect();
    if values.iter().any(String::is_empty) {
        return Err(bad(&flag, "an empty value (values are separated by commas)".into()));
    }
    let mut seen = BTreeSet::new();
    if let Some(dup) = values.iter().find(|v| !seen.insert(v.as_str())) {
        return Err(bad(&flag, format!("the value {dup} is given twice")));
    }
    Ok(Setting { key, values })
}

/// One cell of the grid: a model and one value of every swept setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cell {
    /// The folder name of the cell: the model, then `_key=value` per swept
    /// setting (`din_lr=0.003`).
    pub name: String,
    /// The model.
    pub model: ModelKind,
    /// `(key, value)` of every swept setting, in the order of the `--set`
    /// flags.
    pub set: Vec<(String, String)>,
}

/// A value as it appears in a folder name: characters other than letters,
/// digits, `.`, `+` and `-` become `_`, so that a value never makes a path.
fn path_safe(value: &str) -> String {
    value.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-') { c } else { '_' }).collect()
}

/// Every cell of models × the cartesian product of the settings, model
/// first, then the settings in the order given (the last varies fastest).
pub fn cells(models: &[ModelKind], sets: &[Setting]) -> Result<Vec<Cell>, TrainError> {
    if models.is_empty() {
        return Err(bad("--models", "no model given: the grid is empty".into()));
    }
    let mut keys = BTreeSet::new();
    if let Some(dup) = sets.iter().find(|s| !keys.insert(s.key.as_str())) {
        return Err(bad("--set", format!("`{}` is swept twice; give all its values in one --set", dup.key)));
    }
    if let Some(s) = sets.iter().find(|s| s.values.is_empty()) {
        return Err(bad("--set", format!("`{}` has no value: the grid is empty", s.key)));
    }
    let mut combos: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for s in sets {
        combos = combos
            .into_iter()
            .flat_map(|c| {
                s.values.iter().map(move |v| {
                    let mut c = c.clone();
                    c.push((s.key.clone(), v.clone()));
                    c
                })
            })
            .collect();
    }
    let mut cells = Vec::new();
    let mut names = BTreeSet::new();
    for &model in models {
        for set in &combos {
            let mut name = model.name().to_string();
            for (k, v) in set {
                name.push_str(&format!("_{k}={}", path_safe(v)));
            }
            if !names.insert(name.clone()) {
                return Err(bad(
                    "--set",
                    format!(
                        "two cells would share the folder {name}: values differ only in characters a folder name cannot hold"
                    ),
                ));
            }
            cells.push(Cell { name, model, set: set.clone() });
        }
    }
    Ok(cells)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_take_ranges_and_lists() {
        assert_eq!(parse_seeds("1-5").unwrap(), vec![1, 2, 3, 4, 5]);
        assert_eq!(parse_seeds("1,2,7").unwrap(), vec![1, 2, 7]);
        assert_eq!(parse_seeds("3, 10-12").unwrap(), vec![3, 10, 11, 12]);
        for bad in ["5-1", "", "1,,2", "a", "1-b", "1-3,2", "-1", "0-5000"] {
            let e = parse_seeds(bad).unwrap_err().to_string();
            assert!(e.contains("--seeds"), "{bad}: {e}");
        }
    }

    #[test]
    fn models_are_names_once() {
        assert_eq!(parse_models("base,din").unwrap(), vec![ModelKind::Base, ModelKind::Din]);
        assert!(parse_models("base,base").unwrap_err().to_string().contains("twice"));
        assert!(parse_models("base,gru").unwrap_err().to_string().contains("dien-noaux"));
    }

    #[test]
    fn the_grid_is_the_cartesian_product() {
        let sets = [parse_set("lr=0.001,0.003").unwrap(), parse_set("alpha-aux=1,10").unwrap()];
        assert_eq!(sets[1].key, "alpha_aux");
        let cells = cells(&[ModelKind::Base, ModelKind::Dien], &sets).unwrap();
        let names: Vec<&str> = cells.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names.len(), 8);
        assert_eq!(names[0], "base_lr=0.001_alpha_aux=1");
        assert_eq!(names[1], "base_lr=0.001_alpha_aux=10");
        assert_eq!(names[7], "dien_lr=0.003_alpha_aux=10");
        assert_eq!(super::cells(&[ModelKind::Din], &[]).unwrap()[0].name, "din");
        assert!(super::cells(&[], &[]).is_err());
        assert!(super::cells(&[ModelKind::Din], &[sets[0].clone(), sets[0].clone()]).is_err());
        for bad in ["lr", "=1", "lr=", "lr=1,,2", "lr=1,1"] {
            assert!(parse_set(bad).unwrap_err().to_string().contains("--set"), "{bad}");
        }
    }
}
