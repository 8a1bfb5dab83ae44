//! Structured: builds a valid Dependency Descriptor and its structure from the input,
//! writes it, parses it back and checks nothing changed.
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use weir_codecs::av1::dependency_descriptor::{
    ChainDiffs, Dti, Dtis, FrameDiffs, FrameTemplate, RenderResolution,
};
use weir_codecs::{DependencyDescriptor, DependencyStructure, FrameDependency};

const DTIS: [Dti; 4] = [
    Dti::NotPresent,
    Dti::Discardable,
    Dti::Switch,
    Dti::Required,
];

fn dtis(u: &mut Unstructured<'_>, n: usize) -> Result<Dtis> {
    let v: Vec<Dti> = (0..n)
        .map(|_| u.choose(&DTIS).copied())
        .collect::<Result<_>>()?;
    Ok(Dtis::from_slice(&v).expect("n <= 32"))
}

fn structure(u: &mut Unstructured<'_>) -> Result<Option<DependencyStructure>> {
    let dt = u.int_in_range(1u8..=32)?;
    let chains = u.int_in_range(0..=dt)?;
    let (mut sid, mut tid) = (0u8, 0u8);
    let mut templates = Vec::new();
    loop {
        let fd: Vec<u16> = (0..u.int_in_range(0..=3)?)
            .map(|_| u.int_in_range(1u16..=16))
            .collect::<Result<_>>()?;
        let cd: Vec<u8> = (0..chains)
            .map(|_| u.int_in_range(0u8..=15))
            .collect::<Result<_>>()?;
        templates.push(FrameTemplate {
            spatial_id: sid,
            temporal_id: tid,
            dtis: dtis(u, usize::from(dt))?,
            fdiffs: FrameDiffs::from_slice(&fd).expect("<= 3"),
            chain_diffs: ChainDiffs::from_slice(&cd).expect("<= 32"),
        });
        match u.int_in_range(0u8..=3)? {
            1 if tid < 7 => tid += 1,
            2 if sid < 3 => (sid, tid) = (sid + 1, 0),
            3 => break,
            _ => {}
        }
        if templates.len() == 64 {
            break;
        }
    }
    let protected: Vec<u8> = if chains == 0 {
        Vec::new()
    } else {
        (0..dt)
            .map(|_| u.int_in_range(0..=chains - 1))
            .collect::<Result<_>>()?
    };
    let res: Vec<RenderResolution> = (0..=sid)
        .map(|_| {
            Ok(RenderResolution {
                width: u.int_in_range(1u32..=65536)?,
                height: u.int_in_range(1u32..=65536)?,
            })
        })
        .collect::<Result<_>>()?;
    let with_res = u.arbitrary::<bool>()?;
    let offset = u.int_in_range(0u8..=63)?;
    Ok(DependencyStructure::new(
        offset,
        dt,
        chains,
        &templates,
        &protected,
        with_res.then_some(&res[..]),
    )
    .ok())
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let Some(s) = structure(u)? else {
        return Ok(());
    };
    let index = u.choose_index(s.templates().len())?;
    let template_id = ((usize::from(s.template_id_offset()) + index) % 64) as u8;
    let t = *s.template(template_id).expect("index in range");
    let dt = usize::from(s.decode_target_count());
    let (cdti, cfd, cch) = (u.arbitrary()?, u.arbitrary()?, u.arbitrary()?);
    let mut frame = FrameDependency {
        spatial_id: t.spatial_id,
        temporal_id: t.temporal_id,
        dtis: if cdti { dtis(u, dt)? } else { t.dtis },
        fdiffs: t.fdiffs,
        chain_diffs: t.chain_diffs,
        resolution: s.resolutions().map(|r| r[usize::from(t.spatial_id)]),
    };
    if cfd {
        let fd: Vec<u16> = (0..u.int_in_range(0..=8)?)
            .map(|_| u.int_in_range(1u16..=4096))
            .collect::<Result<_>>()?;
        frame.fdiffs = FrameDiffs::from_slice(&fd).expect("<= 8");
    }
    if cch {
        let cd: Vec<u8> = (0..s.chain_count())
            .map(|_| u.arbitrary())
            .collect::<Result<_>>()?;
        frame.chain_diffs = ChainDiffs::from_slice(&cd).expect("<= 32");
    }
    let attached: bool = u.arbitrary()?;
    let d = DependencyDescriptor {
        start_of_frame: u.arbitrary()?,
        end_of_frame: u.arbitrary()?,
        template_id,
        frame_number: u.arbitrary()?,
        structure_attached: attached,
        active_decode_targets: u
            .arbitrary::<Option<u32>>()?
            .map(|m| m & s.all_decode_targets()),
        custom_dtis: cdti,
        custom_fdiffs: cfd,
        custom_chains: cch,
        frame,
    };
    let mut out = [0u8; 4096];
    let n = d.write(&s, &mut out).expect("valid descriptor writes");
    let mut cache = if attached { None } else { Some(s.clone()) };
    let got = DependencyDescriptor::parse_with_cache(&out[..n], &mut cache).expect("parses back");
    assert_eq!(got, d);
    assert_eq!(cache.as_ref(), Some(&s));
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
