# hessian stage rules (see workflow/rules/common.smk for names and input functions).
