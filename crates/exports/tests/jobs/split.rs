//! Splitting at `max_file_bytes`: several parts, each a valid file of its format, whose rows
//! concatenate to the whole.

use crate::util::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_max_file_bytes_gives_valid_parts_that_concatenate_to_the_whole() {
    let limit = 128 * 1024;
    let h = harness(Setup {
        patients: 40,
        observations: 50,
        max_file_bytes: limit,
        ..Setup::default()
    })
    .await;
    let runner = h.exports.start(h.shutdown.clone());
    let patients = ids(40);
    let patients: Vec<&str> = patients.iter().map(String::as_str).collect();
    let all: Vec<u32> = (0..40).collect();
    let observations = expected(&h.workload, &["his", "wearable"], &all);
    for format in FORMATS {
        let job = h
            .kick_off(request(&["his", "wearable"], &patients, format))
            .await;
        let m = h.manifest(&job.id).await;
        let sizes: Vec<u64> = m.output.iter().map(|f| f.extension.size).collect();
        eprintln!("{format}: parts {sizes:?}");
        assert!(m.output.len() >= 2, "{format}: split into parts: {sizes:?}");
        let mut got = Vec::new();
        let mut counted = 0;
        for (i, file) in m.output.iter().enumerate() {
            let bytes = h.download(&job.id, i as u32 + 1).await;
            // Each part is a whole file of its format (the readers refuse anything else).
            let cells = read_cells(format, &bytes);
            assert_eq!(cells.len() as u64, file.count, "{format}: part {i} count");
            assert!(file.count > 0);
            counted += file.count;
            got.extend(cells);
            assert!(
                file.extension.size <= limit,
                "{format}: part {i} of {} bytes for a limit of {limit}",
                file.extension.size
            );
        }
        assert_eq!(counted, 4000);
        assert_eq!(got, expected_cells(&observations, format), "{format}");
    }
    h.shutdown.cancel();
    runner.stopped().await;
}
