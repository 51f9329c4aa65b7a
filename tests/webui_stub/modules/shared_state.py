class State:
    skipped = False
    interrupted = False
    stopping_generation = False
    job = ""
    job_no = 0
    job_count = 0
    sampling_step = 0
    sampling_steps = 0
    textinfo = None

    def skip(self):
        self.skipped = True

    def interrupt(self):
        self.interrupted = True

    def nextjob(self):
        self.job_no += 1
        self.sampling_step = 0

    def begin(self, job="(unknown)"):
        # modules/shared_state.py State.begin (A1111 1.10.1, Forge 2): the job count is -1
        # until process_images_inner sets it to n_iter (hires fix doubles it)
        self.skipped = self.interrupted = self.stopping_generation = False
        self.job_count = -1
        self.job_no = 0
        self.sampling_step = self.sampling_steps = 0
        self.job = job
