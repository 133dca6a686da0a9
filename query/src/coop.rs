//! A physical optimizer rule that makes every operator of a plan a point where the query can be
//! cancelled.
//!
//! A query is cancelled by aborting its task, which takes effect only when the task yields to
//! the scheduler. DataFusion makes the plan's leaves yield (they take tokio's cooperative
//! budget), but an operator that produces many batches from one input batch — a cross join of
//! two large inputs, say — can compute for hours without polling a leaf, so a timeout would
//! answer the client while the computation goes on. Wrapping each inner operator's output in
//! [`CooperativeExec`] spends the budget once per batch at every level: the task yields at
//! least every few batches, wherever the work is.

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coop::CooperativeExec;

/// Wraps every inner operator in [`CooperativeExec`]. Runs last, after every rule that looks
/// at operators' types.
#[derive(Debug, Default)]
pub struct YieldEverywhere;

impl PhysicalOptimizerRule for YieldEverywhere {
    fn name(&self) -> &str {
        "promlake_yield_everywhere"
    }

    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let is_coop = node.is::<CooperativeExec>();
            // Leaves are made cooperative by DataFusion itself.
            if is_coop || node.children().is_empty() {
                return Ok(Transformed::no(node));
            }
            Ok(Transformed::yes(
                Arc::new(CooperativeExec::new(node)) as Arc<dyn ExecutionPlan>
            ))
        })
        .map(|t| t.data)
    }

    fn schema_check(&self) -> bool {
        true
    }
}
