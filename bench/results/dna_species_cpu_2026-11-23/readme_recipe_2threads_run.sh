set -e
s=$(date +%s)
python -m seqssm.train task=dna task.data.val_fraction=0.2 trainer.max_steps=60 trainer.val_check_interval=30 trainer.enable_progress_bar=false hydra.run.dir=pre > pre.log 2>&1
p=$(date +%s)
python -m seqssm.train task=dna_classify model.init_from=pre/checkpoints/best.ckpt 'task.data.train_lengths=[256,1024]' task.data.val_fraction=0.15 optim.lr=5e-3 optim.weight_decay=0 trainer.max_steps=200 trainer.val_check_interval=50 trainer.enable_progress_bar=false hydra.run.dir=ft > ft.log 2>&1
f=$(date +%s)
python -m seqssm.evaluate task=dna_classify ckpt=ft/checkpoints/best.ckpt task.data.eval_windows=50 > ev.log 2>&1
e=$(date +%s)
echo "pretrain $((p-s)) finetune $((f-p)) evaluate $((e-f)) total $((e-s))" > times.txt
