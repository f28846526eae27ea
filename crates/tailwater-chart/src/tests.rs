use super::*;
use crate::axis::format_tick;

fn polyline_points(svg: &str, name: &str) -> Vec<(f64, f64)> {
    let marker = format!("data-series=\"{name}\"");
    let start = svg.find(&marker).expect("series present");
    let rest = &svg[start..];
    let p = rest.find("points=\"").expect("points") + 8;
    let end = rest[p..].find('"').expect("end of points");
    rest[p..p + end]
        .split_whitespace()
        .map(|xy| {
            let (x, y) = xy.split_once(',').expect("x,y");
            (x.parse().expect("x"), y.parse().expect("y"))
        })
        .collect()
}

#[test]
fn escapes_every_character_that_could_end_an_attribute_or_open_an_element() {
    assert_eq!(
        escape(r#"<a href="x" onload='y'>&"#),
        "&lt;a href=&quot;x&quot; onload=&#39;y&#39;&gt;&amp;"
    );
    let svg = LineChart::new("t\"<", Axis::linear("x"), Axis::linear("y"))
        .series(Series::new("a\"b<script>", vec![(0.0, 1.0), (1.0, 2.0)]))
        .render();
    assert!(!svg.contains("<script"));
    assert!(svg.contains("data-series=\"a&quot;b&lt;script&gt;\""));
}

#[test]
fn a_line_runs_left_to_right_and_up_for_rising_data() {
    let svg = LineChart::new("t", Axis::linear("s"), Axis::linear("r"))
        .series(Series::new(
            "up",
            vec![(0.0, 0.0), (5.0, 50.0), (10.0, 100.0)],
        ))
        .render();
    let pts = polyline_points(&svg, "up");
    assert_eq!(pts.len(), 3);
    assert!(pts[0].0 < pts[1].0 && pts[1].0 < pts[2].0);
    // SVG's y grows downwards.
    assert!(pts[0].1 > pts[1].1 && pts[1].1 > pts[2].1);
}

#[test]
fn linear_ticks_are_round_and_cover_the_data() {
    let d = Axis::linear("x").domain(3.0, 87.0);
    assert_eq!(d.lo, 0.0);
    assert!(d.hi >= 87.0 && d.hi <= 100.0, "{}", d.hi);
    assert!(
        d.ticks.iter().all(|t| (t / 20.0).fract().abs() < 1e-9),
        "{:?}",
        d.ticks
    );
    let fitted = Axis::linear("x").fitted().domain(120.0, 180.0);
    assert!(fitted.lo >= 100.0 && fitted.lo <= 120.0, "{}", fitted.lo);
    let floor = Axis::linear("x").at_least(200.0).domain(0.0, 20.0);
    assert!(floor.hi >= 200.0);
}

#[test]
fn log_axes_span_whole_decades_and_skip_values_that_are_not_positive() {
    let d = Axis::log("ms").domain(0.3, 420.0);
    assert_eq!(d.ticks, vec![0.1, 1.0, 10.0, 100.0, 1000.0]);
    let svg = LineChart::new("t", Axis::linear("s"), Axis::log("ms"))
        .series(Series::new(
            "p99",
            vec![(0.0, 0.0), (1.0, 10.0), (2.0, -1.0), (3.0, 100.0)],
        ))
        .render();
    assert_eq!(polyline_points(&svg, "p99").len(), 2);
}

#[test]
fn non_finite_points_are_left_out_and_no_data_says_so() {
    let svg = LineChart::new("t", Axis::linear("s"), Axis::linear("r"))
        .series(Series::new(
            "a",
            vec![(0.0, f64::NAN), (1.0, 1.0), (f64::INFINITY, 2.0)],
        ))
        .render();
    assert_eq!(polyline_points(&svg, "a").len(), 1);
    let empty = LineChart::new("t", Axis::linear("s"), Axis::linear("r"))
        .series(Series::new("a", vec![(0.0, f64::NAN)]))
        .render();
    assert!(empty.contains("No data."));
    assert!(!empty.contains("<polyline"));
}

#[test]
fn colours_repeat_dashed_past_the_palette() {
    let mut chart = LineChart::new("t", Axis::linear("s"), Axis::linear("r"));
    for i in 0..12 {
        chart = chart.series(Series::new(format!("s{i}"), vec![(0.0, 1.0), (1.0, 2.0)]));
    }
    let svg = chart.render();
    let line = |name: &str| {
        let start = svg
            .find(&format!("data-series=\"{name}\""))
            .expect("present");
        svg[start..].split('>').next().expect("tag").to_string()
    };
    assert!(!line("s0").contains("dasharray"));
    assert!(line("s10").contains("dasharray"));
    assert!(line("s10").contains(PALETTE[0]));
}

#[test]
fn bars_are_as_tall_as_their_values_and_the_reference_is_drawn() {
    let svg = BarChart::new("g", "load", "req/s", vec!["1x".into(), "2x".into()])
        .series(BarSeries::new("protected", vec![100.0, 200.0]))
        .reference(200.0, "capacity")
        .render();
    let heights: Vec<f64> = svg
        .match_indices("data-series=\"protected\"")
        .map(|(i, _)| {
            let rest = &svg[i..];
            let h = rest.find("height=\"").expect("height") + 8;
            let end = rest[h..].find('"').expect("end");
            rest[h..h + end].parse().expect("number")
        })
        .collect();
    assert_eq!(heights.len(), 2);
    assert!((heights[1] / heights[0] - 2.0).abs() < 0.02, "{heights:?}");
    assert!(svg.contains("stroke-dasharray"));
    assert!(svg.contains(">capacity</text>"));
}

#[test]
fn a_document_places_each_chart_below_the_previous_one() {
    let a = LineChart::new("a", Axis::linear("s"), Axis::linear("r"))
        .series(Series::new("x", vec![(0.0, 1.0), (1.0, 2.0)]));
    let b = a.clone();
    let doc = document(900.0, &[(a.render(), a.height()), (b.render(), b.height())]);
    assert_eq!(doc.matches("<svg").count(), 3);
    assert_eq!(doc.matches("</svg>").count(), 3);
    assert!(doc.contains("<svg x=\"0\" y=\"6\""));
    assert!(doc.contains(&format!("<svg x=\"0\" y=\"{}\"", 6.0 + a.height() + 12.0)));
}

#[test]
fn tick_labels_are_short() {
    assert_eq!(format_tick(0.0), "0");
    assert_eq!(format_tick(1500.0), "1500");
    assert_eq!(format_tick(2.5), "2.5");
    assert_eq!(format_tick(0.125), "0.125");
    assert_eq!(format_tick(10.0), "10");
}
