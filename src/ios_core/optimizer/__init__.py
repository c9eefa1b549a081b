"""The optimizer: IOS's dynamic program over stage endings, plus sequential and greedy, behind `search`.

It sees stage costs only through the `ios_core.cost.StageCost` protocol.
"""

from ios_core.optimizer.dp import PartSolution, solve_part
from ios_core.optimizer.endings import ending_generator, merge_endings, parallel_endings
from ios_core.optimizer.part import Ending, Part, make_part, merge_class, merge_size_limit, split_parts
from ios_core.optimizer.rerank import NARROWER, Contender, choose, search_end_to_end
from ios_core.optimizer.search import OPTS, OptimizerOptions, SearchResult, SearchStats, optimize, search

__all__ = [
    "NARROWER", "OPTS", "Contender", "Ending", "OptimizerOptions", "Part", "PartSolution", "SearchResult",
    "SearchStats", "choose", "ending_generator", "make_part", "merge_class", "merge_endings",
    "merge_size_limit", "optimize", "parallel_endings", "search", "search_end_to_end", "solve_part", "split_parts",
]
