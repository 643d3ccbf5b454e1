"""The pages: what a notebook run shares (`notebook`), the stages' library calls (`pipeline`), prose (`narrative`),
figures (`plots`), HTML pages (`pages`), the EDA's tables (`eda`) and Grad-CAM (`explain`).
"""
