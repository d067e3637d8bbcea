"""The pipeline's stages (study layer): each module turns a `interp.study.Study` into a
`StageResult` (its part of `report.json`, its figures, its artifacts) by calling one method
package (`probes`, `interp.causal`, `interp.steering`, `interp.slipping`, `interp.r2d`).
`interp.pipeline.run_study` calls them in order; the method packages never import this one."""
